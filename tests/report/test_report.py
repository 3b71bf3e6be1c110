"""OUT/report.html: written by every export, self-contained, rebuilt by `edgetune report`,
and rendered by a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edgetune.report import figures
from tests.support import REPO
from tests.support.cli import assert_user_error, edgetune

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def plots_of(html: str) -> list[Image.Image]:
    images = []
    for data in PNG.findall(html):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()  # decodes every pixel: a truncated PNG raises here
        images.append(im)
    return images


def copy_report_inputs(run: Path, dest: Path) -> Path:
    """What `edgetune report` reads: the manifest and the cached data, not the artifacts."""
    dest.mkdir()
    for name in ("manifest.json", "report.json"):
        shutil.copy(run / name, dest / name)
    return dest


def test_run_writes_a_self_contained_report(trained_run):
    out, manifest = trained_run
    html = (out / "report.html").read_text()
    # Nothing fetched from elsewhere: no links, scripts or sources outside the file.
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "<link" not in html and "<script" not in html and "url(" not in html
    plots = plots_of(html)
    # training curves, confusion matrix, per-class accuracy, worst images, accuracy/latency
    assert len(plots) == 5
    assert all(im.width > 200 and im.height > 100 for im in plots)
    for title in ("Training", "Validation", "Worst-classified images", "Artifacts: accuracy and latency",
                  "Quantization: what was chosen and why", "Host, versions and command"):
        assert f">{title}<" in html, title
    for a in manifest.artifacts:
        assert a.file in html
    assert manifest.recommended["cpu"]["why"].split(" (")[0] in html
    assert "torch" in html and manifest.versions["onnxruntime"] in html


def test_cached_data_holds_history_and_the_val_confusion(trained_run):
    out, manifest = trained_run
    data = json.loads((out / "report.json").read_text())
    assert [r["epoch"] for r in data["history"]] == [1, 2]
    ev = data["evaluation"]
    confusion = ev["confusion"]
    assert len(confusion) == len(manifest.classes) and sum(map(sum, confusion)) == ev["images"]
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    recommended = manifest.artifact(manifest.recommended["cpu"]["file"])
    assert ev["artifact"] == recommended.file and abs(correct / ev["images"] - recommended.top1) < 1e-3
    assert 0 < len(ev["worst"]) <= 12 and all(w["thumb"] for w in ev["worst"])
    wrong = [w for w in ev["worst"] if w["pred"] != w["label"]]
    assert [w["p_true"] for w in wrong] == sorted(w["p_true"] for w in wrong)


def test_rebuild_shows_stages_domains_and_trials_when_present(trained_run, tmp_path):
    """The page follows the data: an adaptation's `top1_<domain>` fields, a history with
    unfreezing stages and a search's trials.csv each bring their section."""
    out, _ = trained_run
    bundle = copy_report_inputs(out, tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text())
    for a in raw["artifacts"]:
        a["top1_target"] = round(a["top1"] - 0.1, 4)
    raw["adaptation"] = {"method": "bn", "target_images": 40}
    (bundle / "manifest.json").write_text(json.dumps(raw))
    cache = json.loads((bundle / "report.json").read_text())
    # as the trainer records a gradual unfreezing (--unfreeze-schedule head:1,2)
    for r, (stage, unfreeze) in zip(cache["history"], ((1, "head"), (2, "2"))):
        r.update(stage=stage, unfreeze=unfreeze)
    (bundle / "report.json").write_text(json.dumps(cache))
    (bundle / "trials.csv").write_text(
        "number,value,params_lr,params_unfreeze,state\n"
        "0,0.91,0.001,2,COMPLETE\n1,0.95,0.003,all,COMPLETE\n2,,0.1,head,FAIL\n3,0.93,0.0003,2,COMPLETE\n")
    (bundle / "importances.json").write_text('{"lr": 0.7, "unfreeze": 0.3}')

    proc = edgetune("report", bundle)
    assert proc.returncode == 0, proc.stderr
    html = (bundle / "report.html").read_text()
    assert ">Source and target domains<" in html and "target_images" in html
    assert ">Search<" in html and "4 trials" in html
    assert "Shaded bands and dashed lines mark the unfreezing stages" in html and ">top 2<" in html
    assert "Page rebuilt at" in html
    # + domain bars, optimisation history, importances, per-parameter slices
    assert len(plots_of(html)) == 5 + 4


def test_report_command_errors_are_one_line(tmp_path):
    assert_user_error(edgetune("report", tmp_path / "nope"), "is not a folder")
    (tmp_path / "empty").mkdir()
    assert_user_error(edgetune("report", tmp_path / "empty"), "manifest.json is missing")


_PROBE = """<script>addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
});</script>"""


def test_report_renders_in_headless_chromium(trained_run, chromium, tmp_path):
    """A real browser: every plot decodes, and the page is not blank."""
    out, _ = trained_run
    page = tmp_path / "report.html"
    # The probe script reads the browser's own decoding of every <img>; the report has none.
    page.write_text((out / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    base = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--allow-file-access-from-files", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-images="5"' in body and 'data-broken="0"' in body, body

    shot = tmp_path / "shot.png"
    run = subprocess.run([*base, "--window-size=1280,2400", f"--screenshot={shot}", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    grey = Image.open(shot).convert("L")
    assert grey.size == (1280, 2400)
    hist = grey.histogram()
    background = max(hist)
    # Not blank: a large share of pixels differ from the page background, in many shades.
    assert 1 - background / sum(hist) > 0.2
    assert sum(1 for n in hist if n > 50) > 30


@pytest.mark.parametrize("cut", ["history", "evaluation"])
def test_report_without_history_or_val_still_renders(trained_run, tmp_path, cut):
    out, _ = trained_run
    bundle = copy_report_inputs(out, tmp_path / "b")
    cache = json.loads((bundle / "report.json").read_text())
    cache[cut] = [] if cut == "history" else None
    (bundle / "report.json").write_text(json.dumps(cache))
    proc = edgetune("report", bundle)  # no config.yaml here: the val images cannot be found
    assert proc.returncode == 0, proc.stderr
    html = (bundle / "report.html").read_text()
    assert ("No training history" in html) == (cut == "history")
    assert ("No per-image validation results" in html) == (cut == "evaluation")
    plots_of(html)


def test_readme_plot_command_writes_the_report_plots(trained_run, tmp_path):
    out, _ = trained_run
    tool = REPO / "tools" / "report_plots.py"
    proc = subprocess.run([sys.executable, tool, out, tmp_path, "--prefix", "demo-"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["demo-accuracy-latency.png", "demo-confusion.png", "demo-per-class.png",
                     "demo-training.png", "demo-worst.png"]
    for p in tmp_path.glob("*.png"):
        Image.open(p).load()


CARD = re.compile(r'<div class="card"><div class="k">([^<]*)</div><div class="v">([^<]*)</div>'
                  r'<div class="s">([^<]*)</div>')


def drawn(monkeypatch) -> dict:
    """The arguments each report figure is drawn with, recorded as the page renders."""
    from edgetune.report.html import plots

    calls: dict = {}
    for name in ("confusion_matrix", "worst_images", "domain_accuracy", "accuracy_latency"):
        real = getattr(plots, name)

        def record(*args, _name=name, _real=real, **kwargs):
            calls[_name] = (args, kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(plots, name, record)
    return calls


def render(out: Path) -> str:
    from edgetune.report.html import collect, page

    return page.render(collect.read_manifest_raw(out), collect.gather(out, command="test"))


def test_adapted_report_names_every_figure(adapted_run, monkeypatch):
    """Agreement with fp32 is never shown as accuracy: the headline is fp32's source val top-1,
    the confusion matrix comes from labelled source images, and each bar says what it is."""
    from edgetune.adapt.stage import AGREEMENT
    from edgetune.report.figures import pct

    out, m = adapted_run.out, adapted_run.manifest
    ev, fp32 = m.evaluation, m.artifact("model.onnx")
    assert m.adaptation["applied"] == "bn" and ev["split"] == AGREEMENT and fp32.top1 == 1.0
    cache = json.loads((out / "report.json").read_text())
    assert ev["source_val"]["top1_before_adaptation"] == max(r["top1"] for r in cache["history"])
    calls = drawn(monkeypatch)
    html = render(out)

    cards = CARD.findall(html)
    assert cards[0][:2] == ("source val top-1 (fp32)", pct(fp32.top1_source)), cards
    assert f"{ev['source_val']['images']} source val images" in cards[0][2] and "before adaptation" in cards[0][2]
    assert cards[1][:2] == ("target val top-1 (fp32)", pct(fp32.top1_target)), cards
    rec = m.artifact(m.recommended["cpu"]["file"])
    assert cards[2][1].endswith(pct(rec.top1_source)) and "agreement with fp32" in cards[2][2]

    # The confusion matrix is of the source val images, labelled, not of the judged target images.
    confusion = calls["confusion_matrix"][0][0]
    assert sum(map(sum, confusion)) == ev["source_val"]["images"] != ev["images"]
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    assert abs(correct / ev["source_val"]["images"] - rec.top1_source) < 1e-3
    assert cache["evaluation"]["split"] == "val"

    rows, domains = calls["domain_accuracy"][0]
    assert domains == ["source val top-1", "target val top-1"]
    assert [r["source val top-1"] for r in rows] == [a.top1_source for a in m.artifacts]
    assert calls["accuracy_latency"][1]["measure"] == "agreement with fp32"
    assert "<th>agreement with fp32</th>" in html and ">top-1<" not in html


def test_adapted_log_heads_agreement_for_what_it_is(adapted_run):
    from edgetune.report.choice import artifact_table, candidate_table
    from edgetune.report.summary import summary_lines

    out, m = adapted_run.out, adapted_run.manifest
    raw = m.to_dict()
    assert [c.header for c in candidate_table(raw).columns][3] == "agreement with fp32"
    assert [c.header for c in artifact_table(raw).columns][4:7] == [
        "agreement with fp32", "source val top-1", "target val top-1"]
    lines, _ = summary_lines(out, m)
    assert any(ln.startswith("judged    by agreement with fp32") for ln in lines)
    assert any(ln.startswith("source    fp32 source val top-1") for ln in lines)
    cpu = next(ln for ln in lines if ln.startswith("cpu "))
    assert "agreement with fp32" in cpu and "source val top-1" in cpu and " top-1 100" not in cpu
    verdicts = [r["verdict"] for r in m.candidates["cpu"]]  # the choice names what it weighed
    weighed = [v for v in verdicts if v.startswith(("over budget", "chosen: fastest"))]  # (ties name no figure)
    assert all("agreement with fp32" in v for v in weighed), verdicts
    assert not any("top-1" in v for v in verdicts) and "top-1" not in m.recommended["cpu"]["why"]


def test_confusion_from_fp32_predictions_is_not_redrawn(adapted_run, tmp_path, monkeypatch):
    """An older edgetune cached the confusion of the judged target images, labelled by fp32
    itself; a rebuild without the source data says what a confusion matrix needs instead."""
    out = adapted_run.out
    bundle = copy_report_inputs(out, tmp_path / "b")
    cache = json.loads((bundle / "report.json").read_text())
    del cache["evaluation"]["split"]  # as an older edgetune wrote it
    (bundle / "report.json").write_text(json.dumps(cache))
    calls = drawn(monkeypatch)
    html = render(bundle)
    assert "confusion_matrix" not in calls and "worst_images" not in calls
    assert "No confusion matrix or worst-classified images" in html and "--data DIR" in html


@pytest.mark.parametrize("arch,weights,said", [
    ("resnet18", "none", "trained from scratch"),
    ("efficientnet_lite0", "DEFAULT", "pretrained on ImageNet"),
    ("resnet18", "IMAGENET1K_V1", "pretrained on ImageNet (IMAGENET1K_V1)"),
    ("timm/mobilenetv4_conv_small.e2400_r224_in1k", "DEFAULT", "fine-tuned from timm's pretrained weights "
                                                               "(e2400_r224_in1k)"),
    ("resnet18", "/data/w/ours.safetensors", "fine-tuned from ours.safetensors"),
])
def test_origin_says_where_the_network_started(arch, weights, said):
    """The summary, `edgetune info` and the report's header all say it in these words."""
    assert figures.origin({"arch": arch, "weights": weights}) == said
