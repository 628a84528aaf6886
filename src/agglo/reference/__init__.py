"""Reference data: indicator registry, names, boundaries, membership, bundled paths."""
