"""Domain mixing on the shapes world: domain files composed at weights on their base generator,
judged by the oracle on 256 seeds. For each domain's target (a style or a colour), the share of
mixed images that show it, over the latents whose unmixed image does not show it already.

    python scripts/measure_mixing.py RUN_A[:W] RUN_B[:W] [--seeds 256]

(e.g. a neon and a blue `nada train --adapter stylespace` run at weights 1 and 1)."""

from __future__ import annotations

import argparse
import json

import torch

from nada.checkpoints import load_generator
from nada.domains import bake_into, find_base, parse_domain_spec, read_domain
from nada.networks.sampling import z_from_seeds
from nada.shapes.evaluate import parse_target
from nada.shapes.oracle import load_oracle


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domains", nargs="+", metavar="FILE[:W]")
    ap.add_argument("--seeds", type=int, default=256)
    ap.add_argument("--truncation", type=float, default=1.0)
    args = ap.parse_args()
    domains = [(read_domain(p), w) for p, w in map(parse_domain_spec, args.domains)]
    base_path = find_base(domains[0][0])
    base = load_generator(base_path).generator
    mixed = load_generator(base_path).generator
    bake_into(mixed, domains)
    oracle = load_oracle()
    z = z_from_seeds(list(range(args.seeds)), base.z_dim)
    before = oracle.predict(torch.cat([base(c, args.truncation) for c in z.split(64)]))
    after = oracle.predict(torch.cat([mixed(c, args.truncation) for c in z.split(64)]))
    out = {"base": str(base_path), "seeds": args.seeds, "domains": []}
    for d, w in domains:
        t = parse_target(d.info.get("target") or "")
        key = "style" if t.kind == "style" else t.kind
        fresh = before[key] != t.index
        share = float((after[key][fresh] == t.index).float().mean())
        out["domains"].append({"file": str(d.path), "weight": w, "target": t.name, "kind": d.kind,
                               "share": share, "latents": int(fresh.sum())})
        print(f"{t.name:>10} ({d.kind}, weight {w:g}): {share:.3f} of {int(fresh.sum())} latents not already {t.name}")
    shape_kept = float((after["shape"] == before["shape"]).float().mean())
    out["shape_kept"] = shape_kept
    print(f"shape kept: {shape_kept:.3f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
