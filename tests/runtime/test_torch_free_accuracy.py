"""Deployment without PyTorch, end to end: without PyTorch, the bundle predicts the val images with
exactly the top-1 its manifest reports, through the runtime's own preprocessing: the artifact
`load` picks, and an OpenVINO artifact (run in the precision it was evaluated in)."""

import importlib.util
import json
import textwrap

from tests.support.cli import python


def test_torch_free_predictions_reproduce_the_manifest_top1(trained_run, digits_dir):
    out, manifest = trained_run
    openvino = [a.file for a in manifest.artifacts if a.backend == "openvino"]
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from edgetune import runtime

        val = Path({str(digits_dir / "val")!r})
        paths = sorted(val.glob("*/*.png"))
        results = []
        for name in [None, *{openvino[:1]!r}]:
            model = runtime.load({str(out)!r}, artifact=name)
            hits = 0
            for i in range(0, len(paths), 64):
                chunk = paths[i:i + 64]
                for path, top in zip(chunk, model.predict([str(p) for p in chunk], topk=1)):
                    hits += top[0][0] == path.parent.name
            results.append({{"file": model.artifact.file, "backend": model.backend,
                             "top1": round(hits / len(paths), 4)}})
        loaded = sorted(m for m in sys.modules if m.startswith(("torch", "edgetune.train")))
        print(json.dumps({{"results": results, "n": len(paths),
                          "loaded": [m for m in loaded if sys.modules[m] is not None]}}))
    """)
    proc = python(script, torch_free=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    assert got["n"] == manifest.evaluation["images"]
    for r in got["results"]:
        assert r["top1"] == manifest.artifact(r["file"]).top1, r
    if importlib.util.find_spec("openvino") is not None:  # the default export weighs it where installed
        assert [r["backend"] for r in got["results"]][1:] == ["openvino"]
