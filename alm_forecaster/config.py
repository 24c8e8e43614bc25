"""Model configuration: what a checkpoint says, reconciled with what its weights are."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Every checkpoint the platform trained used 20-step windows; none stores it.
DEFAULT_SEQ_LEN = 20


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an xLSTM forecaster.

    ``output_size`` is the number of predicted steps the head really produces (rows of
    ``output_head.3.weight``), whatever the checkpoint's own config claimed.
    """

    input_size: int = 128
    hidden_size: int = 256
    num_layers: int = 3
    num_blocks: int = 7
    output_size: int = 5
    dropout: float = 0.1
    seq_len: int = DEFAULT_SEQ_LEN
    declared: dict = field(default_factory=dict, compare=False)

    @property
    def block_pattern(self) -> str:
        """Block kinds in order: even index sLSTM ('s'), odd index mLSTM ('m')."""
        return "".join("s" if b % 2 == 0 else "m" for b in range(self.num_blocks))

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("declared")
        out["block_pattern"] = self.block_pattern
        return out
