"""The deployable form executes what it says: int8 kernels where it says int8, fp32 where it says fp32.

Models are the test architectures with weights baked on the 8-bit (or 4-bit) grid by
``QuantizationConfig``, as a trial bakes them. Inductor builds compile (seconds each): they are
built once per architecture (module-scoped fixtures) and marked ``slow``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.architectures import MLP, cases
from tradeoff.spaces import (
    ApplyContext,
    Deployable,
    DeployError,
    QuantizationConfig,
    _int8_base,
    cpu,
    deployable_form,
    int8,
    strip_activation_quant,
    supports_float16,
)
from tradeoff.spaces._int8_fx import fx_int8

RMS_TOLERANCE = 0.05  # ||int8 - fp32|| / ||fp32||: 8-bit (7 here) activations measured 0.2-2 %; broken is 30 %+
TOP1_AGREEMENT = 0.95  # top-1 of int8 vs fp32 on random inputs; measured 98-100 % (near-tied random logits)
BF16_TOLERANCE = 0.05  # bf16 keeps 8 mantissa bits: ~0.4 % per op, a few % through a net
CALIBRATION = 4  # batches of 16: what a trial passes (a few training batches)
NAMES = ("resnet", "mobilenet", "mlp", "transformer")


def sampler(name: str, example: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    """Inputs of ``n`` rows from the distribution the model is calibrated on (seeded)."""

    def sample(n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if name == "transformer":
            return torch.randint(0, 100, (n, *example.shape[1:]), generator=g)
        return torch.randn(n, *example.shape[1:], generator=g)

    return sample


def baked(name: str, weight_bits: int = 8) -> tuple[nn.Module, Callable[[int, int], torch.Tensor], dict[str, int]]:
    """A test architecture with its conv/linear weights on the ``weight_bits`` grid, fake-quant removed."""
    model, (example,) = cases()[name]
    sample = sampler(name, example)
    cfg = QuantizationConfig(weight_bits=weight_bits, activation_bits=8)
    train = [(sample(16, i), None) for i in range(CALIBRATION)]
    scored = cfg.bake_(cfg.apply_(model, ApplyContext(example_inputs=(example,), train=train)))
    fp32 = strip_activation_quant(scored)
    return fp32, sample, cfg.weight_bits_by_layer(fp32)


def calibration(sample: Callable[[int, int], torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    return [(sample(16, i),) for i in range(CALIBRATION)]


def int8_arguments(bits: dict[str, int], sample: Callable[[int, int], torch.Tensor]) -> dict:
    """Keyword arguments of an int8 form at batch 1 with the usual calibration."""
    return {
        "weight_bits": bits,
        "activation_bits": 8,
        "example_inputs": (sample(1, 0),),
        "calibration": calibration(sample),
    }


def agreement(fp32: nn.Module, form: Deployable, x: torch.Tensor, batch: int = 4) -> tuple[float, float]:
    """(relative RMS difference, top-1 agreement) of the form against the fp32 model on ``x``.

    Run in batches of ``batch``: a compiled form compiles once per batch-size range (1, 2-15, 16+),
    and the tests already run it at 1 and 4.
    """
    with torch.no_grad():
        ref = fp32(x)
        out = torch.cat([form.module(chunk) for chunk in x.split(batch)])
    assert out.dtype == torch.float32 and out.shape == ref.shape
    return float((out - ref).norm() / ref.norm()), float((out.argmax(1) == ref.argmax(1)).float().mean())


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Forms are called at the thread count they were built for: dynamo guards on it (else it recompiles)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_auto_backend():
    int8.reset_auto_backend()
    yield
    int8.reset_auto_backend()


@pytest.fixture
def no_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "cpu_capabilities", lambda: {"avx2": True, "f16c": True})


@pytest.fixture
def native_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = {"avx2": True, "avx512_bf16": True, "avx512_fp16": True, "avx512_vnni": True}
    monkeypatch.setattr(cpu, "cpu_capabilities", lambda: flags)


# --------------------------------------------------------------------------- inductor int8, every architecture


@pytest.fixture(scope="module", params=NAMES)
def inductor_int8(request: pytest.FixtureRequest):
    name = request.param
    fp32, sample, bits = baked(name)
    before = {k: v.clone() for k, v in fp32.state_dict().items()}
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 99),),
        calibration=calibration(sample),
        backend="inductor",
    )
    return name, fp32, sample, bits, form, before


@pytest.mark.slow
def test_inductor_int8_executes_every_quantizable_layer_in_int8(inductor_int8) -> None:
    name, fp32, _, bits, form, before = inductor_int8
    assert form.backend == "inductor"
    assert form.seconds > 0
    if name == "transformer":
        # nn.MultiheadAttention calls its out_proj through F.multi_head_attention_forward, which
        # X86InductorQuantizer does not annotate: that layer runs fp32, and the form says so.
        assert form.form == "int8+fp32"
        assert set(form.int8_layers) == set(bits) - {"attn.out_proj"}
        assert "fp32: attn.out_proj" in form.note
    else:
        assert form.form == "int8"
        assert set(form.int8_layers) == set(bits)
    assert all(torch.equal(v, before[k]) for k, v in fp32.state_dict().items()), "the model was modified"
    form.module.eval()  # latency harnesses call it; a converted PT2E graph itself would raise


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_inductor_int8_runs_at_batch_1_and_4(inductor_int8, batch: int) -> None:
    _, fp32, sample, _, form, _ = inductor_int8
    x = sample(batch, 7)
    with torch.no_grad():
        assert form.module(x).shape == fp32(x).shape


@pytest.mark.slow
def test_inductor_int8_agrees_with_fp32(inductor_int8) -> None:
    _, fp32, sample, _, form, _ = inductor_int8
    rms, top1 = agreement(fp32, form, sample(128, 1234))
    assert rms <= RMS_TOLERANCE
    assert top1 >= TOP1_AGREEMENT


@pytest.mark.slow
def test_inductor_int8_does_not_saturate_on_cpus_without_vnni() -> None:
    # u8 x s8 pairs of full-range activations and weights overflow int16 on AVX2 without VNNI:
    # with 8-bit activations this dot product of 64 ones with weights 0.5 came out 16, not 32.
    model = nn.Sequential(nn.Linear(64, 4)).eval()
    with torch.no_grad():
        model[0].weight.fill_(0.5)
        model[0].bias.zero_()
    calib = [(torch.rand(8, 64),), (torch.ones(2, 64),), (torch.zeros(2, 64),)]
    form = deployable_form(
        model, weight_bits={"0": 8}, activation_bits=8, example_inputs=(torch.ones(1, 64),), calibration=calib
    )
    assert form.form == "int8"
    assert form.module(torch.ones(2, 64))[0, 0].item() == pytest.approx(32.0, rel=0.02)


@pytest.mark.slow
def test_mixed_bits_keep_the_32_bit_layer_in_fp32_under_inductor() -> None:
    fp32, sample, bits = baked("mlp")
    bits["net.4"] = 32
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 0),),
        calibration=calibration(sample),
        backend="inductor",
    )
    assert (form.form, form.backend) == ("int8+fp32", "inductor")
    assert form.int8_layers == ("net.0", "net.2")
    assert "fp32: net.4" in form.note
    rms, _ = agreement(fp32, form, sample(64, 5))
    assert rms <= RMS_TOLERANCE


# --------------------------------------------------------------------------- fx (torch.ao) int8


@pytest.fixture(scope="module")
def fx_resnet():
    fp32, sample, bits = baked("resnet")
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 0),),
        calibration=calibration(sample),
        backend="fx",
    )
    return fp32, sample, bits, form


def packed_weights(program: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    """The int8 weights a frozen fx program executes with, by layer: its packed-parameter constants."""
    out = {}
    for node in program.graph.nodes():
        kind = str(node.output().type()) if node.kind() == "prim::Constant" else ""
        if "PackedParamsBase" in kind:  # named self.<layer>._packed_params[._packed_params]
            layer = node.output().debugName().removeprefix("self.").split("._packed_params")[0]
            unpack = torch.ops.quantized.conv2d_unpack if "Conv2d" in kind else torch.ops.quantized.linear_unpack
            out[layer] = unpack(node.output().toIValue())[0]
    return out


def ops(program: torch.jit.ScriptModule) -> list[str]:
    return [node.kind() for node in program.graph.nodes()]


def test_fx_backend_runs_quantized_kernels(fx_resnet) -> None:
    fp32, sample, bits, form = fx_resnet
    assert (form.form, form.backend) == ("int8", "fx")
    assert set(form.int8_layers) == set(bits)
    assert isinstance(form.module, torch.jit.ScriptModule)  # frozen: TorchScript calls the ops, not Python
    assert "fx program frozen as TorchScript" in form.note
    assert not form.module.eval().training  # harnesses read and set the mode, which freezing must keep
    assert set(packed_weights(form.module)) == set(bits)  # every layer on int8 weights
    assert all(w.dtype == torch.qint8 for w in packed_weights(form.module).values())
    assert "quantized::conv2d_relu" in ops(form.module)  # real int8 ops, no fake-quant
    assert not any("fake_quantize" in op for op in ops(form.module))
    for batch in (1, 4):
        assert form.module(sample(batch, 3)).shape == (batch, 10)
    rms, top1 = agreement(fp32, form, sample(128, 1234))
    assert rms <= RMS_TOLERANCE
    assert top1 >= TOP1_AGREEMENT


def test_the_frozen_fx_program_gives_the_eager_programs_outputs_at_any_batch(fx_resnet) -> None:
    fp32, sample, bits, form = fx_resnet
    eager, _, note = fx_int8(fp32, sorted(bits), (sample(1, 0),), calibration(sample), 1, scripted=False)
    assert isinstance(eager, torch.fx.GraphModule) and note is None
    with torch.no_grad():
        for batch in (1, 3, 64):  # traced at batch 1; the batch is read at run time
            x = sample(batch, 7)
            assert torch.equal(form.module(x), eager(x))


def test_an_fx_program_torchscript_cannot_trace_runs_eagerly_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    fp32, sample, bits = baked("mlp")

    def no_trace(*args, **kwargs):
        raise RuntimeError("unsupported output")

    monkeypatch.setattr(torch.jit, "trace", no_trace)
    form = deployable_form(fp32, **int8_arguments(bits, sample), backend="fx")
    assert (form.form, form.backend) == ("int8", "fx")
    assert isinstance(form.module, torch.fx.GraphModule)
    assert "fx program runs eagerly: TorchScript could not trace it (RuntimeError: unsupported output)" in form.note


def test_the_fx_program_is_built_at_the_threads_it_will_be_timed_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traced and frozen in a 2-thread process, a program timed at one thread ran 2.5x slower (issue 25)."""
    from tradeoff.spaces import _int8_fx
    from tradeoff.spaces._base import torch_threads

    fp32, sample, bits = baked("mlp")
    seen = []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    real = _int8_fx.script
    monkeypatch.setattr(_int8_fx, "script", spy)
    with torch_threads(2):  # the process's own count, as in a script that sets none
        form = deployable_form(fp32, **int8_arguments(bits, sample), backend="fx", threads=1)
        assert torch.get_num_threads() == 2  # restored after the build
    assert seen == [1] and isinstance(form.module, torch.jit.ScriptModule)


def test_4_bit_weights_execute_as_int8_with_their_4_bit_codes() -> None:
    fp32, sample, bits = baked("mlp", weight_bits=4)
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 0),),
        calibration=calibration(sample),
        backend="fx",
    )
    assert form.form == "int8"
    weights = packed_weights(form.module)
    assert set(weights) == set(bits)
    for name, qweight in weights.items():
        assert qweight.int_repr().abs().max() <= 7  # codes of the 4-bit grid, held in int8
        torch.testing.assert_close(qweight.dequantize(), fp32.get_submodule(name).weight, rtol=1e-5, atol=1e-7)


def test_mixed_bits_keep_the_32_bit_layer_in_fp32_under_fx() -> None:
    fp32, sample, bits = baked("mlp")
    bits["net.4"] = 32
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 0),),
        calibration=calibration(sample),
        backend="fx",
    )
    assert (form.form, form.int8_layers) == ("int8+fp32", ("net.0", "net.2"))
    assert set(packed_weights(form.module)) == {"net.0", "net.2"}
    assert ops(form.module).count("aten::linear") == 1  # the float layer, in fp32


def test_auto_falls_back_to_fx_when_compile_raises_and_remembers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken_compile(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken_compile)
    fp32, sample, bits = baked("mlp")
    kwargs = int8_arguments(bits, sample)
    first = deployable_form(fp32, **kwargs)
    assert (first.form, first.backend) == ("int8", "fx")
    assert "no C++ compiler" in first.note
    assert int8.auto_backend() == "fx"
    second = deployable_form(fp32, **kwargs)
    assert second.backend == "fx" and len(calls) == 1  # remembered: no second attempt in this process
    with pytest.raises(DeployError, match="inductor could not compile"):
        deployable_form(fp32, **kwargs, backend="inductor")  # asked for explicitly: no fallback
    int8.reset_auto_backend()
    assert int8.auto_backend() == "inductor"


def test_auto_falls_back_to_fx_when_compiling_blows_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    fp32, sample, bits = baked("mlp")
    monkeypatch.setattr(int8, "COMPILE_BUDGET_S", -1.0)  # every compile is over budget
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)  # no need to really compile here
    kwargs = int8_arguments(bits, sample)
    first = deployable_form(fp32, **kwargs)
    assert first.backend == "inductor" and "later calls in this process use fx" in first.note
    assert deployable_form(fp32, **kwargs).backend == "fx"


# --------------------------------------------------------------------------- what is not int8


def test_fp32_activations_execute_as_fp32_with_grid_weights() -> None:
    fp32, sample, bits = baked("mlp")
    form = deployable_form(
        fp32, weight_bits=bits, activation_bits=32, example_inputs=(sample(1, 0),), calibration=calibration(sample)
    )
    assert (form.form, form.backend, form.int8_layers) == ("fp32", "eager", ())
    assert form.module is fp32
    assert "weight-only" in form.note


def test_eager_backend_never_executes_int8() -> None:
    fp32, sample, bits = baked("mlp")
    form = deployable_form(
        fp32,
        weight_bits=bits,
        activation_bits=8,
        example_inputs=(sample(1, 0),),
        calibration=calibration(sample),
        backend="eager",
    )
    assert (form.form, form.backend) == ("fp32", "eager")
    assert "int8 needs" in form.note


def test_nothing_quantized_is_fp32() -> None:
    fp32, sample, _ = baked("mlp", weight_bits=8)
    form = deployable_form(fp32, weight_bits={}, activation_bits=32, example_inputs=(sample(1, 0),), calibration=[])
    assert (form.form, form.module) == ("fp32", fp32)


def test_16_bit_weights_execute_as_fp32_without_native_bf16(no_float16) -> None:
    fp32, sample, _ = baked("mlp", weight_bits=8)
    bits = {"net.0": 16, "net.2": 16, "net.4": 16}
    form = deployable_form(fp32, weight_bits=bits, activation_bits=16, example_inputs=(sample(1, 0),), calibration=[])
    assert form.form == "fp32"
    assert "no native bf16" in form.note
    assert next(form.module.parameters()).dtype == torch.float32


def test_16_bit_weights_execute_in_bf16_where_the_cpu_has_it(native_float16) -> None:
    fp32, sample, _ = baked("mlp", weight_bits=8)
    bits = {"net.0": 16, "net.2": 16, "net.4": 16}
    form = deployable_form(fp32, weight_bits=bits, activation_bits=16, example_inputs=(sample(1, 0),), calibration=[])
    assert (form.form, form.backend) == ("bf16", "eager")
    assert {p.dtype for p in form.module.parameters()} == {torch.bfloat16}
    assert next(fp32.parameters()).dtype == torch.float32  # the scored model is untouched
    rms, _ = agreement(fp32, form, sample(64, 2))
    assert rms <= BF16_TOLERANCE


def test_16_and_32_bit_weights_cast_only_the_16_bit_layers(native_float16) -> None:
    fp32, sample, _ = baked("mlp", weight_bits=8)
    form = deployable_form(
        fp32,
        weight_bits={"net.0": 16},
        activation_bits=32,
        example_inputs=(sample(1, 0),),
        calibration=[],
        float16="fp16",
    )
    assert form.form == "fp16+fp32"
    assert form.module.get_submodule("net.0.module").weight.dtype == torch.float16
    assert form.module.get_submodule("net.2").weight.dtype == torch.float32
    rms, _ = agreement(fp32, form, sample(64, 2))
    assert rms <= BF16_TOLERANCE


def test_supports_float16_reads_the_cpu_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "cpu_capabilities", lambda: {"avx2": True, "f16c": True})
    assert not supports_float16("bf16") and not supports_float16("fp16")
    monkeypatch.setattr(cpu, "cpu_capabilities", lambda: {"amx_bf16": True})
    assert supports_float16("bf16") and not supports_float16("fp16")
    monkeypatch.setattr(cpu, "cpu_capabilities", lambda: {"avx512_fp16": True})
    assert supports_float16("fp16") and not supports_float16("bf16")


# --------------------------------------------------------------------------- errors and helpers


class Branchy(nn.Module):
    """Data-dependent control flow: neither torch.export nor FX symbolic tracing can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


@pytest.mark.parametrize("backend", ["inductor", "auto"])
def test_an_untraceable_model_fails_with_its_name_and_the_reason(backend: str) -> None:
    x = (torch.randn(2, 4),)
    with pytest.raises(DeployError, match=r"Branchy: .*(torch.export|FX)") as err:
        deployable_form(
            Branchy().eval(),
            weight_bits={"fc": 8},
            activation_bits=8,
            example_inputs=x,
            calibration=[x],
            backend=backend,
        )
    if backend == "auto":
        assert "inductor path rejected the model" in str(err.value)  # both paths were tried


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight_bits": {"nope": 8}}, "not a conv/linear layer of MLP"),
        ({"weight_bits": {"net.0": 12}}, r"weight_bits\['net.0'\] must be one of"),
        ({"activation_bits": 3}, "activation_bits must be one of"),
        ({"backend": "tensorrt"}, "backend must be one of"),
        ({"float16": "fp8"}, "float16 must be one of"),
        ({"threads": 0}, "threads must be a positive int"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs: dict, message: str) -> None:
    args = {"weight_bits": {}, "activation_bits": 8, "example_inputs": (torch.randn(1, 30),), "calibration": []}
    with pytest.raises(ValueError, match=message):
        deployable_form(MLP().eval(), **{**args, **kwargs})


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_grid_scale_finds_the_grid_baked_weights_sit_on(bits: int) -> None:
    w = torch.randn(6, 5, 3, 3)
    qmax = 2 ** (bits - 1) - 1
    amax = w.flatten(1).abs().amax(1)
    grid = torch.round(w / (amax / qmax).view(-1, 1, 1, 1)) * (amax / qmax).view(-1, 1, 1, 1)
    folded = grid * torch.linspace(-2, 3, 6).view(-1, 1, 1, 1)  # BatchNorm folding scales channels
    scale = _int8_base.grid_scale(folded)
    assert scale is not None
    codes = folded / scale.view(-1, 1, 1, 1)
    assert codes.abs().max() <= qmax + 1e-4
    torch.testing.assert_close(codes, codes.round(), atol=1e-3, rtol=0)
    assert _int8_base.grid_scale(torch.randn(6, 5, 3, 3)) is None  # unbaked weights: the observer's own scale


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_fixed_batch_runs_a_module_only_at_its_batch_whatever_it_is_given(n: int) -> None:
    from tradeoff.spaces import FixedBatch

    seen = []
    net = torch.nn.Linear(3, 2)

    def at_four(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return net(x)

    x = torch.randn(n, 3)
    with torch.no_grad():
        torch.testing.assert_close(FixedBatch(at_four, 4)(x), net(x))
    assert set(seen) == {4} and len(seen) == -(-n // 4)
