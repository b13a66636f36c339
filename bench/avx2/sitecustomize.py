"""Run a Python program as on a CPU with AVX2 and no AVX-512 (an AMD EPYC Zen 1-3, an Intel
client CPU since Alder Lake), on a newer Intel Xeon: ``bench/avx2/run CMD ...``.

Two things differ on such a CPU, and both are reproduced here:
- the kernels: oneDNN and ATen's vectorised kernels use AVX2 only (``ONEDNN_MAX_CPU_ISA=AVX2``,
  ``ATEN_CPU_CAPABILITY=avx2``, set by ``bench/avx2/run`` before the process starts: they are
  read once, at torch's first use);
- what code sees of the CPU: ``torch.cpu._is_amx_tile_supported`` and
  ``_is_avx512_bf16_supported`` answer False (this file patches them as soon as ``torch.cpu`` is
  imported), so rules and candidate lists built on them behave as on that CPU (older code of this
  project picked its training precision from them).

What it does not reproduce: the other CPU's clock, caches, memory bandwidth and core count. Read
ratios measured in the same run (eager against the fast path), not absolute times.
"""
import importlib.abc
import importlib.util
import sys

PATCHED = ("_is_amx_tile_supported", "_is_avx512_bf16_supported", "_is_avx512_supported",
           "_is_avx512_vnni_supported", "_is_amx_fp16_supported")


def _patch(module) -> None:
    for name in PATCHED:
        if hasattr(module, name):
            setattr(module, name, lambda: False)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torch.cpu":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _Finder())
