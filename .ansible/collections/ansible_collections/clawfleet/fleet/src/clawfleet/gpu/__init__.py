"""NVIDIA GPU detection and vLLM sizing.

Standard library only: the Ansible roles copy this package to hosts that have no clawfleet runtime yet and run
``python3 -m clawfleet.gpu`` there, so detection on the host and sizing on the controller share one implementation.
"""

from clawfleet.gpu.detect import Gpu, GpuReport, detect, detect_from_dir, parse_nvidia_smi_csv
from clawfleet.gpu.profiles import PROFILES, ModelProfile, profile_from_dict
from clawfleet.gpu.sizing import SizingError, VllmPlan, plan_vllm

__all__ = [
    "PROFILES",
    "Gpu",
    "GpuReport",
    "ModelProfile",
    "SizingError",
    "VllmPlan",
    "detect",
    "detect_from_dir",
    "parse_nvidia_smi_csv",
    "plan_vllm",
    "profile_from_dict",
]
