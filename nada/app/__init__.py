"""nada's web demo (Gradio): Train and Explore tabs over the library's API, one job at a time.

``launch(AppContext(runs_dir))`` serves it; ``build_app(ctx)`` returns the Blocks; tabs are
listed in :mod:`nada.app.tabs`; :class:`JobRunner` runs any ``fn(hooks=RunHooks)`` job."""

from .context import AppContext
from .jobs import Job, JobRunner, JobSnapshot
from .ui import build_app, launch

__all__ = ["AppContext", "Job", "JobRunner", "JobSnapshot", "build_app", "launch"]
