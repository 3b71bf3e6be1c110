"""User errors: one line on stderr, exit code 2, no traceback."""

import shutil

import pytest

from tests.support.cli import assert_user_error, edgetune

FAST = ["--weights", "none", "--image-size", "32", "--epochs", "1"]


def test_missing_data_dir(tmp_path):
    assert_user_error(edgetune("run", "--data", tmp_path / "nope", "--out", tmp_path / "o", *FAST),
                      "nope", "does not exist")


def test_empty_data_dir(tmp_path):
    (tmp_path / "d").mkdir()
    assert_user_error(edgetune("run", "--data", tmp_path / "d", "--out", tmp_path / "o", *FAST),
                      "no class folders")


def test_class_folder_without_images(small_digits, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(small_digits, data)
    (data / "9").mkdir()
    (data / "9" / "notes.txt").write_text("hello")
    assert_user_error(edgetune("run", "--data", data, "--out", tmp_path / "o", *FAST),
                      "9", "has no images")


def test_unknown_model_suggests(small_digits, tmp_path):
    # With the default --weights DEFAULT: the name is checked before any weights are resolved.
    assert_user_error(edgetune("run", "--data", small_digits, "--model", "resnet181", "--out", tmp_path / "o"),
                      "unknown model 'resnet181' (did you mean 'resnet18'?)")


def test_unreadable_image_is_named(small_digits, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(small_digits, data)
    (data / "7" / "torn.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert_user_error(edgetune("run", "--data", data, "--out", tmp_path / "o", *FAST), "torn.jpg")


@pytest.mark.parametrize("args,needle", [
    (["--epoch", "3"], "did you mean '--epochs'"),
    (["--optimizer", "adam"], "adamw"),
    (["--unfreeze", "some"], "'all' or 'auto'"),
    (["--targets", "cpu,jetsn"], "allowed"),
    (["--cpu-engines", "onnxruntime,openvno"], "did you mean 'openvino'"),
    (["--ship-candidates", "1"], "--ship-candidates 1 must be at least 2"),
    (["--weights", "none"], "--image-size"),
    (["--qat", "sometimes"], "auto, off, always"),
    (["--head-init", "zeros"], "imprint, random"),
    (["--qat-epochs", "0"], "--qat off"),
    (["--qat", "always", "--targets", "gpu"], "no INT8 recipe"),
])
def test_bad_flags(small_digits, tmp_path, args, needle):
    assert_user_error(edgetune("run", "--data", small_digits, "--out", tmp_path / "o", *args), needle)


def test_a_flag_of_another_command_is_named_so(tmp_path):
    # It was "(did you mean '--overwrite'?)": the suggestion came from every command's flags.
    assert_user_error(edgetune("export", tmp_path / "best.pt", "--out", tmp_path / "o", "--overwrite"),
                      "--overwrite belongs to run, train", "not to edgetune export", "edgetune export --help")


def test_non_empty_out_is_refused(small_digits, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    assert_user_error(edgetune("run", "--data", small_digits, "--out", tmp_path / "o", *FAST),
                      "--overwrite")
    assert (tmp_path / "o" / "keep.txt").read_text() == "mine"


def test_yaml_config_sets_defaults_and_flags_override(small_digits, tmp_path):
    cfg = tmp_path / "run.yaml"
    # `cache: off` as a user writes it: YAML 1.1 reads a bare off as False.
    cfg.write_text("model: resnet18\nweights: none\nimage-size: 32\nepochs: 1\nbatch_size: 32\ncache: off\n")
    proc = edgetune("train", "--config", cfg, "--data", small_digits, "--out", tmp_path / "o",
                    "--unfreeze", "head")
    assert proc.returncode == 0, proc.stderr
    written = (tmp_path / "o" / "config.yaml").read_text()
    assert "unfreeze: head" in written and "image_size: 32" in written and "cache: 'off'" in written
    cfg.write_text("epohcs: 1\n")
    assert_user_error(edgetune("train", "--config", cfg, "--data", small_digits, "--out", tmp_path / "p"),
                      "did you mean 'epochs'")


def test_build_engine_without_tensorrt_is_one_line(trained_run):
    pytest.importorskip("edgetune.export.tensorrt")
    from edgetune.export.tensorrt import is_available

    if is_available()[0]:
        pytest.skip("TensorRT is installed here: the GPU test builds a real engine")
    out, _ = trained_run
    assert_user_error(edgetune("build-engine", out), "TensorRT", "edgetune[tensorrt]")
