"""Forward passes in cache-sized pieces on a CPU (distcal._modules.in_pieces)."""

import pytest
import torch

from distcal._modules import CPU_PIECE_ROWS, in_pieces, module_logits
from distcal.distill import build_network


def _network():
    return build_network(
        "convnet", input_shape=(1, 28, 28), n_classes=10, width=8, depth=3, random_state=0
    )


def test_pieces_give_the_rows_of_one_pass_over_the_batch():
    net = _network().eval()
    x = torch.randn(3 * CPU_PIECE_ROWS + 5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    calls = []

    def counted(batch):
        calls.append(len(batch))
        return net(batch)

    with torch.no_grad():
        whole = net(x)
        pieces = in_pieces(counted, x)
    assert calls == [CPU_PIECE_ROWS] * 3 + [5]
    # a row's logits do not depend on its neighbours, so the pieces agree to rounding (bit for
    # bit where the convolution's kernel does not change with the batch size, as on x86 CPUs)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)
    logits = module_logits(net, x, batch_size=len(x))
    assert torch.equal(logits, pieces)


def test_small_batches_run_once():
    calls = []
    x = torch.zeros(CPU_PIECE_ROWS, 3)
    in_pieces(lambda batch: calls.append(len(batch)) or batch, x)
    assert calls == [CPU_PIECE_ROWS]


@pytest.mark.parametrize(
    "returned",
    [lambda b: (b, b), lambda b: b.sum(), lambda b: b[:1]],
    ids=["a tuple", "a scalar", "one row"],
)
def test_an_output_without_one_row_per_input_is_returned_from_the_whole_batch(returned):
    # the caller's checks then name what the module returned for the batch it was given
    x = torch.ones(2 * CPU_PIECE_ROWS, 3)
    out = in_pieces(returned, x)
    expected = returned(x)
    if isinstance(expected, tuple):
        assert isinstance(out, tuple)
        assert out[0].shape == expected[0].shape
    else:
        assert out.shape == expected.shape


def test_a_module_returning_one_row_is_named_as_before():
    class OneRow(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:1, :10]

    with pytest.raises(ValueError, match=r"\(200, n_classes\); it returned shape \(1, 10\)"):
        module_logits(OneRow(), torch.ones(200, 1, 4, 4), batch_size=200)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_pieces_on_a_gpu():
    calls = []
    x = torch.zeros(4 * CPU_PIECE_ROWS, 3, device="cuda")
    in_pieces(lambda batch: calls.append(len(batch)) or batch, x)
    assert calls == [4 * CPU_PIECE_ROWS]
