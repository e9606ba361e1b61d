"""Data the course runs on: shipped with packages or in data/, never downloaded."""
