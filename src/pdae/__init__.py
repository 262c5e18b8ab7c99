"""pdae: representation learning and autoencoding from pre-trained diffusion models (PDAE)."""

from pdae.errors import CheckpointError, DataError, PdaeError
from pdae.schedule import NoiseSchedule

__all__ = ["CheckpointError", "DataError", "NoiseSchedule", "PdaeError"]
__version__ = "0.1.0"
