"""A diagonal state-space layer (S4D-Lin, Gu et al. 2022) with two equal forms.

Per channel h and complex mode n, discretised by zero-order hold with B folded into C:

    x_t = Abar * x_{t-1} + u_t            Abar = exp(dt * A)
    y_t = 2 Re(sum_n Ct_n x_t,n) + D u_t   Ct = C (Abar - 1) / A

Training uses the convolution form (kernel K_l = 2 Re(sum_n Ct_n Abar_n^l), applied by FFT in
O(L log L)); generation uses the recurrence, O(1) per token. The tests check the two agree.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class S4D(nn.Module):
    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1) -> None:
        super().__init__()
        if d_state % 2:
            raise ValueError(f"d_state must be even (complex conjugate pairs), got {d_state}")
        modes = d_state // 2
        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.full((d_model, modes), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).expand(d_model, modes).clone())
        self.C = nn.Parameter(torch.randn(d_model, modes, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(d_model))

    def discrete(self) -> tuple[Tensor, Tensor, Tensor]:
        """(dt*A, Abar, Ct), each [H, modes] complex."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = torch.exp(self.log_dt).unsqueeze(-1) * A
        Abar = torch.exp(dtA)
        Ct = torch.view_as_complex(self.C) * (Abar - 1) / A
        return dtA, Abar, Ct

    def kernel(self, length: int) -> Tensor:
        """K [H, L]: the layer's impulse response over `length` steps."""
        dtA, _, Ct = self.discrete()
        steps = torch.arange(length, device=dtA.device, dtype=torch.float32)
        # Abar^l = exp(l Re dtA) (cos + i sin)(l Im dtA), in real arithmetic: torch's complex exp is
        # not vectorised on CPU and cost ~40 % of a training step.
        magnitude = torch.exp(dtA.real.unsqueeze(-1) * steps)
        angle = dtA.imag.unsqueeze(-1) * steps
        terms = Ct.real.unsqueeze(-1) * torch.cos(angle) - Ct.imag.unsqueeze(-1) * torch.sin(angle)
        return 2 * (magnitude * terms).sum(1)

    def forward(self, u: Tensor) -> Tensor:
        """u [B, L, H] -> y [B, L, H], causal."""
        length = u.shape[1]
        k = self.kernel(length)
        uf = torch.fft.rfft(u.transpose(1, 2), n=2 * length)
        kf = torch.fft.rfft(k, n=2 * length)
        y = torch.fft.irfft(uf * kf, n=2 * length)[..., :length].transpose(1, 2)
        return y + u * self.D

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, *self.log_A_real.shape, dtype=torch.complex64, device=device)

    def discrete_for_steps(self) -> tuple[Tensor, Tensor, Tensor]:
        """`discrete()` computed once and reused while the parameters are unchanged: generation steps
        one token at a time, and recomputing it per token cost about a third of a step."""
        params = (self.log_dt, self.log_A_real, self.A_imag, self.C)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if torch.is_grad_enabled() or getattr(self, "_steps_key", None) != key:
            value = self.discrete()
            if torch.is_grad_enabled():
                return value
            self._steps_key, self._steps_value = key, value
        return self._steps_value

    def step(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One token: u [B, H], state [B, H, modes] -> (y [B, H], new state)."""
        _, Abar, Ct = self.discrete_for_steps()
        state = Abar * state + u.unsqueeze(-1)
        return 2 * (Ct * state).sum(-1).real + self.D * u, state
