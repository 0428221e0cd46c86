"""Runtime: the host side of a deployed spiking LM (conversations, KV cache, generation)."""

from stac.runtime.outputs import SpikeCausalLMOutput
from stac.runtime.processor import Conversation, Meter, RunRecord, TemporalSpikeProcessor

__all__ = ["Conversation", "Meter", "RunRecord", "SpikeCausalLMOutput", "TemporalSpikeProcessor"]
