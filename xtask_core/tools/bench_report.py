"""Plain-text tables of ``xtask bench`` results (:func:`format_table`): the figures, and for the
inference figures the candidate paths the Predictor measured (path → ms, share of the measured
peak GFLOP/s, chosen ✓)."""
from __future__ import annotations

import math

__all__ = ["format_table", "format_candidates", "format_parts"]


def _fmt(v, spec=".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


_BF16_NOTES = {"avx512_bf16": " (AVX512-BF16 without AMX: bf16 is slower than fp32, so the fast paths stay fp32)",
               "none": " (no bf16 instructions: emulated, so the fast paths stay fp32)"}


def format_table(res: dict) -> str:
    """Plain-text summary of :func:`run_benchmarks` results."""
    m, p = res["machine"], res["peak_gflops"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"bf16: {m['bf16_support']}, load avg {_fmt((m.get('loadavg_start') or [float('nan')])[0], '.2f')}"
             f" -> {_fmt((m.get('loadavg_end') or [float('nan')])[0], '.2f')}"
             + ("".join(f", {k}={v}" for k, v in (m.get("isa_caps") or {}).items())
                + " (instruction set capped: kernels as on a CPU without the newer extensions)"
                if m.get("isa_caps") else ""),
             f"peak matmul (best of torch.mm and a 1x1 conv): fp32 {p['fp32']:.0f} GFLOP/s, "
             f"bf16 {p['bf16']:.0f} GFLOP/s"
             + _BF16_NOTES.get(m["bf16_support"], ""),
             "",
             f"{'figure':<12} {'reference ms':>13} {'fast ms':>9} {'speedup':>8} {'target':>7}  {'ok':<4} "
             f"{'ref %peak':>9} {'fast %peak':>10}  checks"]
    for name, f in res["figures"].items():
        target = f.get("target")
        ok = f.get("meets_target")
        checks = f.get("checks", {})
        if name in ("inference",):
            chk = (f"seg agree {100 * checks['seg_agreement']:.2f}%, "
                   f"seg_t {100 * checks['seg_t_agreement']:.2f}%, depth rel {100 * checks['depth_rel_diff']:.2f}%, "
                   f"depth_t rel {100 * checks['depth_t_rel_diff']:.2f}%; measuring {f['fast_cold_start_s']:.1f} s")
            tc = f.get("checks_trained_checkpoint")
            if tc:
                chk += (f"; trained {tc['checkpoint']}: seg {100 * tc['seg_agreement']:.2f}%, "
                        f"depth rel {100 * tc['depth_rel_diff']:.2f}%")
        elif name == "demo_model":
            chk = (f"{f.get('model', 'model')}; predict {f['predict_ms']:.1f} ms/image (target < "
                   f"{f['target_ms']:.0f}: {'met' if f.get('meets_target_ms') else 'missed'}), "
                   f"measuring {f['fast_cold_start_s']:.1f} s")
        elif name == "train_step":
            chk = f"max rel loss diff {100 * checks['max_rel_loss_diff']:.2f}% over {f['steps']} steps"
        elif name == "finetune_job":
            chk = f"job {f['job_s']:.1f} s = {f['job_over_plain_loop']:.2f}x the plain loop ({f['plain_loop_s']:.1f} s)"
            if "baseline_job_s" in f:
                chk += (f"; baseline code {f['baseline_job_s']:.1f} s ({f['baseline_over_plain_loop']:.2f}x), "
                        f"{f['speedup_vs_baseline']:.2f}x faster now")
        elif name == "metrics":
            chk = f"identical: {checks['identical']} (max rel diff {checks['max_rel_diff']:.1e})"
        else:
            chk = (f"decoding included; warm (decoded-once cache) {f['speedup_warm']:.1f}x, first call "
                   f"(+ fast copy, trace, workers) {f['speedup_first_call']:.1f}x")
        share_r = f"{100 * f['reference_peak_share']:.0f}%" if "reference_peak_share" in f else "-"
        share_f = f"{100 * f['fast_peak_share']:.0f}%" if "fast_peak_share" in f else "-"
        lines.append(f"{name:<12} {_fmt(f['reference_ms']):>13} {_fmt(f['fast_ms']):>9} "
                     f"{_fmt(f['speedup'], '.2f') + 'x':>8} {(_fmt(target, 'g') + 'x') if target else '-':>7}  "
                     f"{('-' if ok is None else 'yes' if ok else 'NO'):<4} {share_r:>9} {share_f:>10}  {chk}")
    for name, f in res["figures"].items():
        lines.extend(format_candidates(name, f))
        lines.extend(format_parts(f.get("parts")))
    quick = "  (quick mode: tiny sizes, numbers mean nothing)" if res["quick"] else ""
    lines.append(f"\ntotal {res['seconds']:.0f} s{quick}")
    return "\n".join(lines)


def format_candidates(name: str, f: dict) -> list[str]:
    """The candidate table of one inference figure (``f["candidates"]``), or no lines."""
    rows = f.get("candidates")
    if not rows:
        return []
    size = "x".join(str(v) for v in f.get("input_hw", ()))
    lines = [f"\ncandidate paths, {name} ({f.get('model', 'model')}, batch {f.get('batch', 1)}, {size}; "
             f"measured by the Predictor in {_fmt(f.get('autotune_s'), '.1f')} s):",
             f"  {'path':<20} {'ms':>9} {'GFLOP/s':>8} {'%peak':>6}  {'chosen':<6}  note"]
    for r in rows:
        share = f"{100 * r['peak_share']:.0f}%" if r.get("peak_share") is not None else "-"
        lines.append(f"  {r['path']:<20} {_fmt(r.get('ms')):>9} {_fmt(r.get('gflops')):>8} {share:>6}  "
                     f"{'✓' if r['chosen'] else '':<6}  {r.get('note', '')}")
    return lines


def format_parts(parts: dict | None) -> list[str]:
    """Where a fine-tune job's time went (``{tree: {part: seconds}}``), one column per tree."""
    if not parts or not any(parts.values()):
        return []
    trees = [t for t in parts if parts[t]]
    names = list(dict.fromkeys(k for t in trees for k in parts[t]))
    lines = ["\nfinetune_job, where the time goes (one instrumented job each, seconds):",
             f"  {'part':<28}" + "".join(f"{t:>12}" for t in trees)]
    for k in names:
        lines.append(f"  {k:<28}" + "".join(f"{_fmt(parts[t].get(k)):>12}" for t in trees))
    lines.append(f"  {'click to done':<28}" + "".join(f"{_fmt(sum(parts[t].values())):>12}" for t in trees))
    return lines
