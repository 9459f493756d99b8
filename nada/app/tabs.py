"""The tabs of the web demo, in page order. A tab is a module of ``nada.app`` with a function
``build_<name>_tab(ctx: AppContext)`` that lays out its components inside the ``gr.Tab`` the app
opens for it and wires its events. It may return ``(fn, inputs, outputs)``: the app then runs
``fn`` whenever the tab is selected (Explore refreshes its run list that way).

Adding a tab is one line here; an entry whose module does not exist yet is skipped, so the
Mapper tab appears as soon as ``nada/app/mapper_tab.py`` defines ``build_mapper_tab``."""

from __future__ import annotations

# (title, module inside nada.app, builder function)
TABS: list[tuple[str, str, str]] = [
    ("Train", "train_tab", "build_train_tab"),
    ("Explore", "explore_tab", "build_explore_tab"),
    ("Mapper", "mapper_tab", "build_mapper_tab"),
    ("Edit", "edit_tab", "build_edit_tab"),
]
