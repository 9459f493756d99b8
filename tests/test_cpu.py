"""The CPU runtime (nada.cpu) and the CPU fast paths of the synthesis layers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import stylegan2_ops
from nada import cpu
from nada.errors import ConfigError
from nada.networks import Generator, GeneratorConfig
from nada.networks.layers import SynthesisLayer, modulated_conv2d


def test_threads_for_rounds_free_cores_and_keeps_one():
    assert cpu.threads_for(None, 4) == 4
    assert cpu.threads_for(2.0, 2) == 2
    assert cpu.threads_for(1.6, 2) == 2
    assert cpu.threads_for(1.2, 2) == 1
    assert cpu.threads_for(0.0, 2) == 1
    assert cpu.threads_for(7.9, 4) == 4


def test_monitor_does_not_count_this_process_as_others(monkeypatch):
    """free = usable - (machine busy time - this process's own) / wall time, from fake readings."""
    clock = iter([0.0, 2.0, 2.0, 4.0])
    busy = iter([100.0, 103.0, 103.0, 104.0])   # the machine: 3 then 1 busy core-seconds
    own = iter([10.0, 13.0, 13.0, 13.0])        # ours: all of the first 3, none of the last
    monkeypatch.setattr(cpu.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cpu, "_cpu_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(cpu, "_own_seconds", lambda: next(own))
    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    mon = cpu.FreeCoreMonitor()
    assert mon.free() == pytest.approx(2.0)     # only we were busy
    mon._last = mon._read()
    assert mon.free() == pytest.approx(1.5)     # others used 1 core-second over 2 s


def test_monitor_sees_another_busy_process():
    if cpu._cpu_busy_seconds() is None:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.5)
        free = cpu.measure_free_cores(1.0)
    finally:
        busy.kill()
        busy.wait()
    assert free <= cpu.usable_cores() - 0.5


def test_configure_fixed_threads_and_error():
    before = torch.get_num_threads()
    try:
        plan = cpu.configure(1)
        assert torch.get_num_threads() == 1 and plan.threads == 1 and not plan.automatic
        assert cpu.plan() is plan and "fixed" in plan.describe()
        with pytest.raises(ConfigError, match="--threads 0"):
            cpu.configure(0)
    finally:
        torch.set_num_threads(before)
        cpu._plan = None


def test_cli_sets_wait_policy_before_torch_and_info_shows_it():
    code = ("import sys; from nada.cli import main; sys.exit(main(['info', '--threads', '1']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "CPU threads" in ln)
    assert "1 of" in line and "fixed: --threads" in line
    code = ("import os, sys; from nada import cpu; p = cpu.configure(); import torch; "
            "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'), p.wait_policy, "
            "torch.get_num_threads() == p.threads, p.automatic)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    policy_env, spins, policy, same, automatic = out.stdout.split()
    assert same == "True" and automatic == "True"
    # quiet: bounded spins, never ACTIVE's minutes of spinning; busy: sleeping waits
    assert (policy, policy_env, spins) in (("spin-then-sleep", "-", str(cpu.SPIN_COUNT)), ("passive", "PASSIVE", "-"))
    # a count the user gives is kept
    env["GOMP_SPINCOUNT"] = "1234"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.stdout.split()[1] == "1234"


def test_forward_without_gradients_runs_channels_last_with_the_same_values(monkeypatch):
    """Without gradients every map from 32 px runs NHWC (faster on CPU); with them wide and large
    maps stay NCHW. Both layouts give one generator's images within float rounding."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=128, z_dim=16, w_dim=16, mapping_layers=2,
                                  channel_base=8192, channel_max=128)).eval()
    z = torch.randn(2, 16)
    orig = torch.Tensor.contiguous

    def layouts(grad: bool):
        seen = {}

        def spy(self, memory_format=torch.contiguous_format):
            if self.dim() == 4:
                seen.setdefault((self.shape[-1], self.shape[1]), memory_format)
            return orig(self, memory_format=memory_format)

        monkeypatch.setattr(torch.Tensor, "contiguous", spy)
        with torch.set_grad_enabled(grad):
            out = G(z, noise_mode="const")
        monkeypatch.setattr(torch.Tensor, "contiguous", orig)
        return out.detach(), seen

    with_grad, nchw = layouts(True)
    without, nhwc = layouts(False)
    wide = (64, 128)  # the 128 px block's input: 64 px, 128 channels
    assert nchw[wide] == torch.contiguous_format and nhwc[wide] == torch.channels_last
    assert nchw[(8, 128)] == nhwc[(8, 128)] == torch.contiguous_format
    torch.testing.assert_close(without, with_grad, rtol=0, atol=1e-4)


def test_bad_threads_on_the_command_line_is_one_line():
    out = subprocess.run([sys.executable, "-m", "nada", "info", "--threads", "0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--threads 0" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("noise", [True, False])
def test_synthesis_layer_epilogue_matches_the_unfused_formulation(up, noise):
    """The CPU layer folds demodulation, noise, bias and the lrelu gain into one addcmul and an
    in-place lrelu; against the layer written out op by op (values and every gradient)."""
    torch.manual_seed(0)
    layer = SynthesisLayer(6, 5, w_dim=8, resolution=8 * up, up=up).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
    res = layer.resolution
    x = torch.randn(3, 6, res // up, res // up, dtype=torch.double, requires_grad=True)
    w = torch.randn(3, 8, dtype=torch.double, requires_grad=True)
    nz = torch.randn(3, 1, res, res, dtype=torch.double) if noise else None
    mode = "random" if noise else "none"

    def written_out():
        styles = layer.affine(w)
        scaled = nz * layer.noise_strength if noise else None
        y = modulated_conv2d(x, layer.weight, styles, up=up, resample_filter=layer.resample_filter, noise=scaled)
        return stylegan2_ops.bias_act(y, layer.bias, act="lrelu", impl="ref")

    params = [x, w, layer.weight, layer.bias, layer.noise_strength, *layer.affine.parameters()]
    got = layer(x, w, noise_mode=mode, noise=nz)
    want = written_out()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(got)
    ga = torch.autograd.grad(got, params, g, allow_unused=True)
    gb = torch.autograd.grad(want, params, g, allow_unused=True)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_command_started_beside_busy_processes_sleeps_instead_of_spinning():
    """`nada info` (a command whose parser loads torch) started while other processes keep every
    core busy: the wait policy is chosen before torch loads, so it is really passive."""
    if cpu._cpu_busy_seconds() is None:
        pytest.skip("no /proc/stat here")
    spin = "import time\nt=time.time()\nwhile time.time()-t<20: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cpu.usable_cores())]
    try:
        time.sleep(0.5)
        code = ("import os, sys; from nada.cli import main; rc = main(['info']); "
                "print('ENV', os.environ.get('OMP_WAIT_POLICY')); sys.exit(rc)")
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "CPU threads" in ln)
    assert "OpenMP wait passive" in line and "ENV PASSIVE" in out.stdout


def test_governor_follows_the_free_cores_only_when_automatic_and_spinning(monkeypatch):
    class Stub:
        def __init__(self, values):
            self.values = list(values)

        def free(self):
            return self.values.pop(0)

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(cpu, "RECHECK_S", 0.0)
        cpu._plan = cpu.CpuPlan(2, 2, 2.0, "active", True, "test")
        cpu._monitor = Stub([0.4, 0.6, 1.9])
        gov = cpu.ThreadGovernor()
        assert gov.tick() == 1 and torch.get_num_threads() == 1  # another job took the cores
        assert gov.tick() is None and cpu._plan.threads == 1     # still busy: no change
        assert gov.tick() == 2 and torch.get_num_threads() == 2  # it ended
        cpu._plan = cpu.CpuPlan(2, 2, 0.1, "passive", True, "test")
        cpu._monitor = Stub([0.0])
        assert cpu.ThreadGovernor().tick() is None                 # sleeping threads keep every core
        cpu._plan = cpu.CpuPlan(2, 2, None, "active", False, "--threads")
        assert cpu.ThreadGovernor().tick() is None                 # a fixed count is never changed
    finally:
        cpu._plan = cpu._monitor = None
        torch.set_num_threads(before)
