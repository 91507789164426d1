"""Memory probes of the benchmark scripts: chainlab.memory's (one implementation for the package and the scripts)."""
from chainlab.memory import peak_mib, reset_peak, rss_mib

__all__ = ["peak_mib", "reset_peak", "rss_mib"]
