"""Make a member of an exported artifact a finished member of a run, so that `export` can
ensemble it with newly trained ones (e.g. v1's MobileNetV2 into runs/v4).

    python scripts/import_member.py ARTIFACT_DIR RUN_DIR NAME [--index 0]

Writes RUN_DIR/NAME/{best.safetensors, config.json, done.json}. The weights are the
artifact's fp16 values widened to fp32. Reads the card as JSON: any artifact format.
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from skin_model.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--index", type=int, default=0, help="member index in the artifact")
    args = parser.parse_args()
    card = json.loads((args.artifact / "model_card.json").read_text())
    spec = card["members"][args.index]
    cfg = TrainConfig.from_json(json.dumps({**spec["training"], "name": args.name}))
    prefix = f"members.{args.index}."
    tensors = {
        k[len(prefix) :]: (v.float() if v.is_floating_point() else v).contiguous()
        for k, v in load_file(str(args.artifact / "model.safetensors")).items()
        if k.startswith(prefix)
    }
    out = args.run / args.name
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "best.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg.__dict__, indent=2))
    (out / "done.json").write_text(
        json.dumps({"imported_from": str(args.artifact), "model_version": card["model_version"]})
    )
    print(f"{out}: {cfg.arch} {cfg.height}x{cfg.width}, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
