"""Protocol-faithful fakes of what cannot exist on this machine (importable as ``fakes.*``)."""
