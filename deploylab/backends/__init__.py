"""Backends turn an ONNX file (or a built artifact) into something that runs.

Each backend imports its engine lazily, so a missing engine never breaks
``import deploylab``.
"""
