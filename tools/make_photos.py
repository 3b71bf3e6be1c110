"""Rebuild the photographs edgetune ships (`edgetune/data/photos/`) from Debian's GCompris data.

    apt-get download gcompris-qt-data        # gcompris-qt-data_3.1-2_all.deb, 44 MB
    python tools/make_photos.py gcompris-qt-data_3.1-2_all.deb [OUT]

GCompris 3.1 holds real photographs, each listed with its author, source and license in a
README beside it, inside Qt resource bundles (`usr/share/gcompris-qt/rcc/*.rcc`). This reads
the .deb in Python (ar, then the xz data tar: no dpkg-deb, no install), keeps the photographs
whose license lets an Apache-2.0 project redistribute them without share-alike (public
domain, CC0; CC-BY with the attribution kept), drops near-duplicates (GCompris uses some
photographs in two activities), resizes each so its shorter side is `SHORT_SIDE` px, writes
JPEGs and one `LICENSES.md` naming every file's author, source, license and changes.
Needs Pillow with WebP (PyPI's wheels have it). The same .deb gives the same files.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import struct
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

ACT = "gcompris/src/activities/"
# class -> (rcc bundle, folder inside it, smallest side in px: below it an image is an icon)
CLASSES = {
    "animal": [("erase", ACT + "erase/resource/", 300),
               ("explore_farm_animals", ACT + "explore_farm_animals/resource/animals/", 200),
               ("explore_world_animals", ACT + "explore_world_animals/resource/animals/", 200)],
    "fish": [("categorization", ACT + "categorization/resource/images/fishes/", 96)],
    "monument": [("categorization", ACT + "categorization/resource/images/monuments/", 200),
                 ("explore_monuments", ACT + "explore_monuments/resource/", 200)],
    "renewable_energy": [("categorization", ACT + "categorization/resource/images/renewable/", 96)],
    "tool": [("categorization", ACT + "categorization/resource/images/tools/", 96)],
}
IMAGES = (".webp", ".jpg", ".jpeg", ".png")
SHORT_SIDE = 160  # px after resizing: room for a 128-160 px crop, ~10 KB a JPEG
QUALITY = 85
# Licenses that allow redistribution inside an Apache-2.0 project without share-alike, as
# the READMEs spell them (lower case, spaces as dashes) -> the name LICENSES.md gives.
# CC-BY-SA and GPL files are left out: they would bind the shipped set to their terms.
ALLOWED = {
    "public-domain": "Public Domain",
    "cc0-1.0": "CC0-1.0",
    "cc-by-2.0": "CC-BY-2.0",
    "cc-by-3.0": "CC-BY-3.0",
    "cc-by-4.0": "CC-BY-4.0",
}
LINKS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-2.0": "https://creativecommons.org/licenses/by/2.0/",
    "CC-BY-3.0": "https://creativecommons.org/licenses/by/3.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
}
# Two README entries misspell the file they describe (same folder, same photograph: the
# source URL names it): file in the bundle -> the name its README gives it.
README_TYPOS = {
    ACT + "categorization/resource/images/tools/screwDriver.webp": "screDriver.webp",
    ACT + "explore_monuments/resource/germany/aulaPalatina.webp": "germany/audaPalatina.webp",
}
DUPLICATE = 8.0  # mean abs difference of 16x16 grey thumbnails below which two photos are one


def rcc_files(blob: bytes):
    """(path, bytes) of every file in a Qt .rcc resource bundle (format 'qres' v1-3)."""
    if blob[:4] != b"qres":
        raise ValueError("not a Qt rcc file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 22 if version >= 2 else 14

    def name(offset):
        n, = struct.unpack(">H", blob[names + offset:names + offset + 2])
        return blob[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        o = tree + i * node
        name_offset, flags = struct.unpack(">IH", blob[o:o + 6])
        path = prefix + (name(name_offset) if i else "")
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[o + 6:o + 14])
            for j in range(count):
                yield from walk(first + j, path + "/" if i else "")
            return
        offset, = struct.unpack(">I", blob[o + 10:o + 14])
        size, = struct.unpack(">I", blob[data + offset:data + offset + 4])
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if flags & 1:  # qCompress: a 4-byte length, then zlib
            payload = zlib.decompress(payload[4:])
        elif flags & 4:
            raise ValueError(f"{path}: zstd-compressed rcc entries are not supported")
        yield path, payload

    yield from walk(0, "")


def deb_data(deb: Path) -> tarfile.TarFile:
    """The data tar of a .deb (an ar archive), opened in memory."""
    blob = deb.read_bytes()
    if blob[:8] != b"!<arch>\n":
        raise ValueError(f"{deb} is not a .deb (ar) archive")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(blob[pos + 60:pos + 60 + size]))
        pos += 60 + size + (size & 1)
    raise ValueError(f"{deb} has no data.tar member")


def bundles(deb: Path) -> dict[str, dict[str, bytes]]:
    """The rcc bundles CLASSES names, each as {path: bytes}."""
    needed = {b for specs in CLASSES.values() for b, _, _ in specs}
    found = {}
    with deb_data(deb) as tar:
        for member in tar.getmembers():
            stem = PurePosixPath(member.name).stem
            if member.name.endswith(".rcc") and stem in needed:
                found[stem] = dict(rcc_files(tar.extractfile(member).read()))
    missing = needed - set(found)
    if missing:
        raise ValueError(f"{deb} lacks the bundles {sorted(missing)}: is it gcompris-qt-data 3.1?")
    return found


@dataclass(frozen=True)
class Credit:
    author: str
    source: str
    license: str  # as the README spells it
    comments: str  # GCompris' own changes (cropping, sharpening, ...)


def parse_readme(text: str) -> dict[str, Credit]:
    """A GCompris README: blank-line separated records of `Key: value` lines, `Files:`
    followed by names on its line or the next ones -> {file name: Credit}."""
    credits = {}
    for record in re.split(r"\n\s*\n", text):
        fields, files, in_files = {}, [], False
        for line in record.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("Copyright", "Source", "License", "Comments", "Files"):
                in_files = key.strip() == "Files"
                if in_files:
                    files += value.split()
                else:
                    fields[key.strip()] = value.strip()
            elif in_files and line.strip():
                files.append(line.strip())
        credit = Credit(fields.get("Copyright", ""), fields.get("Source", ""), fields.get("License", ""),
                        fields.get("Comments", ""))
        credits.update({f: credit for f in files})
    return credits


def credit_of(path: str, folder: str, files: dict[str, bytes]) -> Credit | None:
    """The README record of image `path`: from the nearest README between its folder and
    `folder`, which names files relative to itself. None: no README lists it."""
    listed = README_TYPOS.get(path)
    parent = PurePosixPath(path).parent
    while True:
        readme = files.get(f"{parent}/README")
        if readme is not None:
            name = listed or str(PurePosixPath(path).relative_to(parent))
            credit = parse_readme(readme.decode("utf-8")).get(name)
            if credit is not None:
                return credit
        if str(parent) + "/" == folder or parent == parent.parent:
            return None
        parent = parent.parent


def license_name(spelled: str) -> str | None:
    """The README's license as LICENSES.md names it; None when not allowed."""
    return ALLOWED.get(re.sub(r"[\s_]+", "-", spelled.strip().lower()))


def resized(image: Image.Image) -> Image.Image:
    scale = SHORT_SIDE / min(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Kept:
    cls: str
    file: str  # name under OUT/<cls>/
    original: str  # path inside the bundle
    bundle: str
    credit: Credit
    license: str


def select(found: dict[str, dict[str, bytes]]):
    """Every photograph of every class: (kept with their images, left out with the reason)."""
    kept, left, thumbs, names = [], [], [], set()
    for cls, specs in CLASSES.items():
        for bundle, folder, min_side in specs:
            files = found[bundle]
            for path in sorted(p for p in files if p.startswith(folder) and p.lower().endswith(IMAGES)):
                image = Image.open(io.BytesIO(files[path]))
                if min(image.size) < min_side:
                    continue  # an icon or a sprite, not a photograph
                credit = credit_of(path, folder, files)
                name = license_name(credit.license) if credit else None
                if name is None:
                    left.append((cls, path, credit.license if credit else "no README entry"))
                    continue
                image = image.convert("RGB")
                thumb = image.resize((16, 16)).convert("L").tobytes()
                if any(sum(abs(a - b) for a, b in zip(thumb, t)) / 256 < DUPLICATE for t in thumbs):
                    left.append((cls, path, "a duplicate of a photograph kept"))
                    continue
                thumbs.append(thumb)
                stem = path[len(folder):].rsplit(".", 1)[0].replace("/", "__")
                file = f"{stem}.jpg" if (cls, stem) not in names else f"{bundle}__{stem}.jpg"
                names.add((cls, stem))
                kept.append((Kept(cls, file, path, bundle, credit, name), image))
    return kept, left


def licenses_md(kept: list[Kept]) -> str:
    counts = Counter(k.cls for k in kept)
    lines = [
        "# The shipped photographs: sources and licenses",
        "",
        "Every file here comes from GCompris 3.1 (https://gcompris.net/), as Debian packages it in",
        "`gcompris-qt-data` 3.1-2, and was chosen by `tools/make_photos.py`, which rebuilds this folder",
        "from that package. Only files whose license allows redistribution inside this Apache-2.0",
        "project without share-alike are here: Public Domain, CC0-1.0, and CC-BY with the attribution",
        "below. Each photograph is the author's work, cropped and sharpened by GCompris where its",
        f"changes say so, then resized by edgetune to {SHORT_SIDE} px on its shorter side and saved as a",
        f"JPEG at quality {QUALITY}. The photographs are not under edgetune's Apache-2.0 license: each",
        "keeps its own, given in its row.",
        "",
        "Licenses: " + "; ".join(f"{k} {v}" for k, v in LINKS.items()) + ".",
        "",
        "Classes: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())) + f" ({len(kept)} files).",
        "",
        "| file | author | source | license | changes GCompris notes |",
        "|---|---|---|---|---|",
    ]
    for k in sorted(kept, key=lambda k: (k.cls, k.file)):
        cells = [f"{k.cls}/{k.file}", k.credit.author, k.credit.source, k.license, k.credit.comments or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("deb", type=Path, help="gcompris-qt-data_3.1-2_all.deb")
    p.add_argument("out", type=Path, nargs="?", default=Path(__file__).parents[1] / "edgetune/data/photos")
    args = p.parse_args()
    kept, left = select(bundles(args.deb))
    shutil.rmtree(args.out, ignore_errors=True)
    for k, image in kept:
        (args.out / k.cls).mkdir(parents=True, exist_ok=True)
        resized(image).save(args.out / k.cls / k.file, quality=QUALITY, optimize=True)
    (args.out / "LICENSES.md").write_text(licenses_md([k for k, _ in kept]), encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    reasons = Counter((cls, why if why.startswith(("a duplicate", "no README")) else f"license {why}")
                      for cls, _, why in left)
    print(f"{'class':17s} kept  left out")
    for cls in CLASSES:
        out = ", ".join(f"{n} {why}" for (c, why), n in sorted(reasons.items()) if c == cls)
        print(f"{cls:17s} {sum(k.cls == cls for k, _ in kept):4d}  {out}")
    print(f"{len(kept)} photographs, {size / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
