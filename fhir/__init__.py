"""FHIR R4 read surface (docs/fhir.md).

The `fhir.resources` library (used by the tests to validate what this app emits) is also a package
named `fhir`; this app's package extends its path so that `fhir.resources` is still found there.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
