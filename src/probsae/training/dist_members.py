"""Members mode of a torchrun job (``TrainConfig.distribute='members'``; see distributed.py).

The SAEs of a sweep are dealt round-robin to the ranks; every rank reads the same batches and
trains only its own SAEs, with no communication while training. Each run directory is written by
its owner only. At the end the trained weights and the histories are broadcast so that every rank
returns the same trained SAEs.
"""

from __future__ import annotations

from .dist_group import ProcessGroupContext


class MembersParallel(ProcessGroupContext):
    """One rank of a members-parallel job."""

    mode = "members"

    @property
    def members_mode(self) -> bool:
        return True

    def owner_of(self, index: int) -> int:
        """Round-robin: SAE ``index`` is trained by rank ``index % world_size``."""
        return index % self.world_size

    def finish(self, saes: list, members: list, owned: list[int]) -> list:
        """Broadcast each SAE's trained state and history from its owner, so every rank returns
        the same results (TrainHistory of every SAE, in input order)."""
        from .logger import TrainHistory

        mine = {i: m for i, m in zip(owned, members)}
        histories = []
        for i, sae in enumerate(saes):
            src = self.owner_of(i)
            payload = [None]
            if src == self.rank:
                m = mine[i]
                state = {k: v.detach().cpu() for k, v in m.sae.state_dict().items()}
                payload = [(state, m.records)]
            self._broadcast_object(payload, src)
            state, records = payload[0]
            if src != self.rank:
                sae.load_state_dict(state)
                sae.eval()
            histories.append(TrainHistory(list(records)))
        return histories
