"""``stac profiles``: each bundled hardware profile with a few headline figures."""

from __future__ import annotations

from stac.profiles import Profile, load_profile, profile_names


def key_figures(profile: Profile) -> dict[str, str]:
    """A few headline numbers of a profile, formatted, for ``stac profiles``."""
    if profile.kind == "host":
        d = profile.values["dense"]
        return {
            "peak": f"{d['peak_tflops']:g} TFLOP/s {profile.precision or ''}".strip(),
            "memory": f"{d['memory_gb']:g} GB at {d['memory_bandwidth_gb_s']:g} GB/s",
            "power": f"{d['power_w']:g} W",
        }
    c, s = profile.values["chip"], profile.values["spikes"]
    return {
        "cores": f"{c['cores_per_chip']} x {c['neurons_per_core']} neurons",
        "synaptic memory": f"{c['synaptic_memory_bytes_per_core'] // 1024} KiB/core",
        "weights": f"{c['weight_bits']}-bit",
        "spikes": f"graded {s['payload_bits']}-bit" if s["graded"] else "binary",
        "fan-in": f"{c['axons_in_per_core']} axons/core",
        "synop": f"{profile.get('energy_pj', 'synop'):g} pJ",
        "max chips": f"{c['max_chips']}",
    }


def format_profiles() -> list[str]:
    """One block per bundled profile: name, kind, description, key figures (``stac profiles``)."""
    lines = []
    for name in profile_names():
        p = load_profile(name)
        figures = "; ".join(f"{k} {v}" for k, v in key_figures(p).items())
        extra = f", host {p.host}, backends {', '.join(p.backends) or '-'}" if p.host else ""
        lines.append(f"{p.name:<18} {p.kind:<12} {p.description}{extra}")
        lines.append(f"{'':<18} {figures}")
    return lines


__all__ = ["format_profiles", "key_figures"]
