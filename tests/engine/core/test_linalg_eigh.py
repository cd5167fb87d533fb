"""recon_engine.linalg.eigh: torch's eigh on one LAPACK thread (oneMKL's batched zheevd is
20-60x slower on two threads), same result, and the caller's thread count restored."""

import torch

from recon_engine.linalg import eigh


def test_same_decomposition_and_thread_count_restored():
    torch.manual_seed(0)
    a = torch.randn(3, 40, 24, dtype=torch.complex128)
    gram = a.conj().transpose(1, 2) @ a
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values, vectors = eigh(gram)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    expected_values, _ = torch.linalg.eigh(gram)
    assert torch.allclose(values, expected_values)
    rebuilt = vectors @ torch.diag_embed(values.to(vectors.dtype)) @ vectors.conj().transpose(1, 2)
    assert torch.allclose(rebuilt, gram, atol=1e-9)
