"""The bottom layer: domain errors and time utilities every app may import (docs/architecture.md)."""
