"""The per-version TensorRT build decision and the trtexec command line: pure, so tested here
for every version users run (8.6 on JetPack 6.0, 10.3 on JetPack 6.1+, 10.13, 11.x)."""

import pytest

from edgetune.errors import ConfigError
from edgetune.export.tensorrt import parser_error, timing_cache_path, trtexec_error, version_from_banner
from edgetune.export.trt_plan import Profile, build_mode, parse_device, parse_version, supports_dla, trtexec_argv
from tests.support.cli import python


@pytest.mark.parametrize("version,precision,typed,flags", [
    ("8.6.2.3", "int8", False, ("INT8",)),   # JetPack 6.0: explicit Q/DQ + the INT8 flag
    ("8.6.1", "fp16", False, ("FP16",)),
    ("10.3.0.30", "int8", True, ()),         # JetPack 6.1/6.2: strongly typed, no flags
    ("10.3.0", "fp16", True, ()),
    ("10.13.3.9", "int8", True, ()),
    ("11.0.0", "int8", False, ()),           # 11: always strongly typed, flags removed
    ("11.4.1", "fp16", False, ()),
])
def test_build_mode_per_version(version, precision, typed, flags):
    mode = build_mode(version, precision)
    assert mode.strongly_typed_flag is typed
    assert mode.builder_flags == flags
    assert mode.calibrator is None  # never a calibrator: the scales are in the graph
    assert mode.typing == ("flags" if flags else "strongly typed")


def test_no_version_builds_with_flags_it_lacks():
    # 11 removed BuilderFlag.INT8/FP16; 8.6 has no STRONGLY_TYPED creation flag.
    for v in ("11.0", "11.4.1", "11.9.0"):
        assert not {"INT8", "FP16"} & set(build_mode(v, "int8").builder_flags)
    assert not build_mode("8.6", "int8").strongly_typed_flag


def test_parse_version_and_family():
    assert parse_version("10.13.3.9") == parse_version("10.13.3")
    assert str(parse_version("8.6")) == "8.6.0"
    assert [parse_version(v).family for v in ("8.6.2", "10.3.0", "10.13.0", "11.1")] == ["8.6", "10", "10", "11"]
    assert parse_version("10.13.0") > parse_version("10.3.0")  # numeric, not string, order
    for bad in ("8.5.3", "7.1", "9.2", "12.0", "ten"):
        with pytest.raises(ConfigError, match="TensorRT"):
            parse_version(bad)


def test_dla_per_version():
    assert supports_dla(parse_version("8.6.2"))
    assert supports_dla(parse_version("10.3.0")) and supports_dla(parse_version("10.7.0"))
    assert not supports_dla(parse_version("10.13.0"))
    assert not supports_dla(parse_version("11.2.0")) and not supports_dla(parse_version("11.4.0"))
    assert supports_dla(parse_version("11.4.1"))
    # 10.x on DLA: the documented flag path with GPU fallback, on core 1
    mode = build_mode("10.3.0", "fp16", "dla:1")
    assert (mode.strongly_typed_flag, mode.builder_flags, mode.dla_core) == (False, ("FP16", "GPU_FALLBACK"), 1)
    assert build_mode("11.4.1", "int8", "dla:0").builder_flags == ("GPU_FALLBACK",)
    with pytest.raises(ConfigError, match="TensorRT 10.13.0 has no DLA"):
        build_mode("10.13.0", "int8", "dla:0")
    with pytest.raises(ConfigError, match="8.6 DLA does not take explicitly quantized"):
        build_mode("8.6.2", "int8", "dla:0")


def test_device_and_precision_are_validated():
    assert parse_device("gpu") is None and parse_device("dla:1") == 1
    for bad in ("dla", "dla:x", "cuda", "DLA:0"):
        with pytest.raises(ConfigError, match="'gpu' or 'dla:N'"):
            parse_device(bad)
    with pytest.raises(ConfigError, match="int8, fp16"):
        build_mode("10.3", "fp32")
    with pytest.raises(ConfigError, match="opt-batch"):
        Profile("input", (32, 32), opt_batch=9, max_batch=8)


@pytest.mark.parametrize("version,expected,absent", [
    ("8.6.2", ["--int8"], ["--stronglyTyped"]),
    ("10.3.0", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("10.13.0", ["--stronglyTyped"], ["--int8", "--fp16"]),
    ("11.1.0", [], ["--stronglyTyped", "--int8", "--fp16"]),
])
def test_trtexec_argv_carries_the_same_decision(version, expected, absent):
    profile = Profile("input", (32, 48), opt_batch=2, max_batch=8)
    argv = trtexec_argv("/usr/src/tensorrt/bin/trtexec", build_mode(version, "int8"), "m.onnx", "m.engine",
                        profile, workspace_mb=2048, timing_cache="m.timing.cache")
    assert argv[0] == "/usr/src/tensorrt/bin/trtexec"
    assert {"--onnx=m.onnx", "--saveEngine=m.engine", "--minShapes=input:1x3x32x48",
            "--optShapes=input:2x3x32x48", "--maxShapes=input:8x3x32x48",
            "--memPoolSize=workspace:2048", "--timingCacheFile=m.timing.cache"} <= set(argv)
    assert all(f in argv for f in expected) and not any(f in argv for f in absent)
    dla = trtexec_argv("trtexec", build_mode("10.3.0", "fp16", "dla:0"), "m.onnx", "m.engine", profile, 512, "c")
    assert {"--fp16", "--allowGPUFallback", "--useDLACore=0"} <= set(dla) and "--stronglyTyped" not in dla


def test_trtexec_banner_gives_the_version():
    assert version_from_banner("&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec --help") == "8.6.2"
    assert version_from_banner("[TensorRT v100300] # trtexec") == "10.3.0"
    assert version_from_banner("[TensorRT v101300]") == "10.13.0"
    assert version_from_banner("[TensorRT v110401]") == "11.4.1"
    with pytest.raises(Exception, match="cannot tell the TensorRT version"):
        version_from_banner("usage: trtexec [options]")


class _ParserError:
    """The shape of TensorRT 10's IParserError (node_name/node_operator/desc accessors)."""

    def __init__(self, node_name, op, desc):
        self._n, self._op, self._d = node_name, op, desc

    def node_name(self):
        return self._n

    def node_operator(self):
        return self._op

    def desc(self):
        return self._d


def test_parser_errors_become_one_line_naming_node_and_op():
    line = parser_error("model.onnx", [_ParserError("/layer1/Foo", "Foo", "No importer registered for op: Foo\n"),
                                       _ParserError("x", "Bar", "y")])
    assert "\n" not in line
    assert "node /layer1/Foo (op Foo): No importer registered for op: Foo (+1 more)" in line
    assert "model.onnx" in parser_error("model.onnx", [])
    assert trtexec_error("m.onnx", "[I] ok\n[E] [TRT] ModelImporter.cpp: failed to parse Foo\n[E] more") == (
        "trtexec could not build an engine from m.onnx: [E] [TRT] ModelImporter.cpp: failed to parse Foo")


def test_timing_cache_lives_beside_the_engine(tmp_path):
    engine = tmp_path / "model.int8.tensorrt.engine"
    assert timing_cache_path(engine) == tmp_path / "model.int8.tensorrt.timing.cache"


def test_engine_building_and_preflight_need_no_torch():
    """The device side builds engines without PyTorch (a Jetson image often has none)."""
    code = ("import edgetune.engines, edgetune.export.tensorrt, edgetune.calib.preflight\n"
            "from edgetune.export.trt_plan import build_mode\n"
            "assert build_mode('8.6.2', 'int8').builder_flags == ('INT8',)\n"
            "assert not [m for m in sys.modules if m.startswith('edgetune.train')]\n"
            "print('OK')")
    out = python(code, torch_free=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr
