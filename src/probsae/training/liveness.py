"""Dead/alive latent bookkeeping over a sliding token window (the one copy of this logic)."""

from __future__ import annotations

import torch
from torch import Tensor


class Liveness:
    """Tracks, per latent, the token count at which it last fired.

    alive = fired at least once within the last ``window`` tokens (never-fired latents are dead).
    ``dead_mask`` (for AuxK) counts a latent as dead once it has been silent for ``window`` tokens,
    counting from the start of training for latents that never fired.
    """

    def __init__(self, d_sae: int, window: int, device: torch.device | str = "cpu"):
        self.window = int(window)
        self.tokens_seen = 0
        self.last_fired = torch.full((d_sae,), -1, dtype=torch.int64, device=device)

    def update(self, fired: Tensor, n_tokens: int) -> None:
        self.tokens_seen += int(n_tokens)
        self.last_fired.masked_fill_(fired.to(self.last_fired.device), self.tokens_seen)

    def alive_mask(self) -> Tensor:
        return (self.last_fired >= 0) & (self.tokens_seen - self.last_fired < self.window)

    def alive(self) -> int:
        return int(self.alive_mask().sum())

    def alive_within(self, window: int) -> int:
        """Latents that fired within the last ``window`` tokens (a second, shorter view for the log;
        ``dead_mask`` keeps using ``self.window``)."""
        return int(((self.last_fired >= 0) & (self.tokens_seen - self.last_fired < int(window))).sum())

    def dead_mask(self) -> Tensor:
        return self.tokens_seen - self.last_fired.clamp_min(0) >= self.window

    def state_dict(self) -> dict:
        return {"window": self.window, "tokens_seen": self.tokens_seen, "last_fired": self.last_fired.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.window = int(state["window"])
        self.tokens_seen = int(state["tokens_seen"])
        self.last_fired.copy_(state["last_fired"])
