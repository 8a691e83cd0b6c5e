"""Video classification: TimeSformer / ViViT classifiers trained and evaluated on video clips.

Data is either the synthetic motion task (``data="motion"``, :mod:`spacetime.data.motion_task`:
left vs right, which no single frame can tell) or a folder of the user's videos with one
sub-folder per class (decoded with PyAV by :class:`~spacetime.data.video_folder.VideoFolder`).
Shaped like :mod:`spacetime.diffusion`: ``config``, ``data``, ``train``, ``evaluate``, ``commands``.
"""

from .config import ClassifyConfig
from .data import ClassFolders, ClassifyData, normalize
from .evaluate import evaluate, evaluate_checkpoint, load_classifier, plot_confusion
from .train import train

__all__ = ["ClassifyConfig", "ClassFolders", "ClassifyData", "normalize", "train", "evaluate",
           "evaluate_checkpoint", "load_classifier", "plot_confusion"]
