"""OpenVINO and NNCF usage telemetry, off for every process that imports deploylab.

Read in the sources of openvino 2026.4.1, openvino-telemetry 2025.2.0 and nncf 3.4.0:

- Sending is decided by ``openvino_telemetry/utils/opt_in_checker.py``, ``OptInChecker.check``:
  when the caller passes ``disable_in_ci=True`` and ``_run_in_ci()`` is true (``CI=true``, or
  ``TF_BUILD`` or ``JENKINS_URL`` non-empty) it answers DECLINED before it reads the consent
  file. OpenVINO (``openvino/tools/ovc/telemetry_utils.py``, ``init_ovc_telemetry``, run by
  ``import openvino`` and again by ``convert_model``) and NNCF (``nncf/telemetry/wrapper.py``,
  ``NNCFTelemetry.__init__``) both pass ``disable_in_ci=True``.
- Otherwise a missing consent file counts as consent: ``import openvino`` writes
  ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` and posts an event to Google Analytics,
  ``convert_model`` and ``nncf.quantize`` post more (14 lookups of www.google-analytics.com
  for one convert + quantize, measured).
- The documented switch (docs.openvino.ai 2026, "OpenVINO Telemetry") is ``opt_in_out
  --opt_out``, which writes a per-user consent file; deploylab does not change a user's home.
  It sets ``TF_BUILD`` (not ``CI``, which torch also reads) and NNCF's own ``NNCF_CI``.

This must run before the first ``import openvino``/``import nncf``; ``deploylab/__init__.py``
calls it, and child processes inherit the variables. ``setdefault`` keeps values a user set;
``DEPLOYLAB_ENGINE_TELEMETRY=1`` leaves the engines' defaults alone.
"""

from __future__ import annotations

import os

OFF_SWITCHES = {"TF_BUILD": "True", "NNCF_CI": "1"}


def disable_engine_telemetry() -> None:
    """Set the variables that stop OpenVINO/NNCF telemetry (idempotent; a no-op with
    ``DEPLOYLAB_ENGINE_TELEMETRY=1``)."""
    if os.environ.get("DEPLOYLAB_ENGINE_TELEMETRY") == "1":
        return
    for name, value in OFF_SWITCHES.items():
        os.environ.setdefault(name, value)
