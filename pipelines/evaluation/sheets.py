"""Contact sheets: one PNG that shows what a number means (rows: videos, columns: frames, a label per row)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..micro.detector import _to_numpy


def contact_sheet(videos: Sequence, labels: Sequence[str], path, scale: int = 3, title: str = "") -> Path:
    """Write `videos` (each (f, 3, H, W) in [0, 1]) as rows of frames, `labels[i]` left of row i, to `path`."""
    from PIL import Image, ImageDraw

    arrays = [_to_numpy(v) for v in videos]
    if not arrays:
        raise ValueError("contact_sheet: no videos")
    f = max(a.shape[0] for a in arrays)
    h, w = arrays[0].shape[-2] * scale, arrays[0].shape[-1] * scale
    label_w, gap, top = 230, 2, (16 if title else 0)
    sheet = Image.new("RGB", (label_w + f * (w + gap), top + len(arrays) * (h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0))
    for r, (a, label) in enumerate(zip(arrays, labels)):
        y = top + r * (h + gap)
        lines = [str(label)[i:i + 36] for i in range(0, len(str(label)), 36)][: max(1, h // 11)]
        for j, line in enumerate(lines):
            draw.text((4, y + 2 + 11 * j), line, fill=(0, 0, 0))
        for k in range(a.shape[0]):
            img = (np.clip(a[k].transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            tile = Image.fromarray(img).resize((w, h), Image.NEAREST)
            sheet.paste(tile, (label_w + k * (w + gap), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
