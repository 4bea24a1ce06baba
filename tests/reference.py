"""Independent references the tests compare against: the definitions, written as plain loops."""

from __future__ import annotations

import numpy as np


def brute_force_map_rank1(qf, gf, q_pids, g_pids, q_cams, g_cams):
    """Per-query loop straight from the protocol's definition, cosine distance."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    aps, firsts = [], []
    for i in range(len(qf)):
        dist = 1.0 - gf @ qf[i]
        order = sorted(range(len(gf)), key=lambda j: (dist[j], j))
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            continue
        hits, precisions = 0, []
        for pos, is_match in enumerate(matches, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / pos)
        aps.append(np.mean(precisions))
        firsts.append(matches[0])
    return float(np.mean(aps)), float(np.mean(firsts))
