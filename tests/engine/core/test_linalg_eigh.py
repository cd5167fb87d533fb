"""recon_engine.linalg: eigh is torch's eigh on one LAPACK thread (oneMKL's batched zheevd is
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


def test_a_failing_matrix_is_loaded_alone():
    """Only the numerically indefinite matrix gets the diagonal load: a healthy system's
    solution does not depend on which systems share its batch (review finding)."""
    from recon_engine.linalg import solve_hpd

    torch.manual_seed(1)
    a = torch.randn(8, 5, dtype=torch.float64)
    healthy = a.T @ a + torch.eye(5, dtype=torch.float64)
    indefinite = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0, -1e-12], dtype=torch.float64))
    rhs = torch.randn(5, 1, dtype=torch.float64)
    alone = solve_hpd(healthy[None], rhs[None])
    together = solve_hpd(torch.stack([healthy, indefinite]), torch.stack([rhs, rhs]))
    assert torch.equal(together[0], alone[0])
