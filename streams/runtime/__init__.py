"""The exactly-once loop for hand-written processors, and the protocol they implement."""

from streams.runtime.loop import ExactlyOnceLoop, LoopOptions, kafka_call_guard
from streams.runtime.processor import Output, Processor

__all__ = ["ExactlyOnceLoop", "LoopOptions", "Output", "Processor", "kafka_call_guard"]
