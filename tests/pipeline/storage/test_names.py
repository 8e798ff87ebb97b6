"""Output names: confinement of local outputs through symlinks (at validation and at write time), and
names that no filesystem or S3 can hold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.storage.store import Location, OutsidePrefix, Storage, StorageError, check_storable_name, parse_location


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Location, Path]:
    """An output folder `out` with a real subfolder, a symlink to a folder outside it, a symlink to a
    folder inside it, and a file symlink pointing outside; `outside` is the folder they escape to."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.png").write_bytes(b"not yours")
    (out / "escape").symlink_to(outside)
    (out / "inner").symlink_to(out / "real")
    (out / "linked.png").symlink_to(outside / "victim.png")
    return parse_location(str(out)), outside


@pytest.mark.parametrize("relative", ["a.png", "real/a.png", "new/deeper/a.png", "inner/a.png", "inner/new/a.png"])
def test_outputs_that_stay_inside_pass(tree: tuple[Location, Path], relative: str) -> None:
    out, _ = tree
    Storage().check_confined(out.child(relative), out)


@pytest.mark.parametrize("relative", ["escape/a.png", "escape/new/a.png", "linked.png"])
def test_outputs_that_resolve_outside_are_refused_with_both_paths(tree: tuple[Location, Path], relative: str) -> None:
    out, outside = tree
    expected = f"^{out.child(relative)}: outside {out} \\(it resolves through a symlink to {outside}"
    with pytest.raises(ValueError, match=expected) as raised:
        Storage().check_confined(out.child(relative), out)
    assert isinstance(raised.value, OutsidePrefix)
    assert str(outside) in str(raised.value)


def test_a_prefix_that_is_itself_a_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "target")
    alias = parse_location(str(tmp_path / "alias"))
    Storage().check_confined(alias.child("a.png"), alias)
    with pytest.raises(OutsidePrefix):
        Storage().check_confined(parse_location(str(tmp_path / "elsewhere" / "a.png")), alias)


def test_s3_locations_need_no_resolving_but_schemes_must_match(tmp_path: Path) -> None:
    storage = Storage()
    prefix = parse_location("s3://bucket/out")
    storage.check_confined(prefix.child("a/b.png"), prefix)
    with pytest.raises(OutsidePrefix):
        storage.check_confined(parse_location(str(tmp_path / "a.png")), prefix)


def test_a_symlink_placed_after_validation_cannot_send_a_write_outside(tree: tuple[Location, Path]) -> None:
    out, outside = tree
    storage = Storage()
    output = out.child("later/a.png")
    storage.check_confined(output, out)
    os.symlink(outside, out.path + "/later")
    expected = f"^{output}: outside {out} \\(it resolves through a symlink to {outside}/a.png\\)$"
    with pytest.raises(OutsidePrefix, match=expected):
        storage.write_bytes(output, b"image", confine_to=out)
    assert sorted(os.listdir(outside)) == ["victim.png"]
    storage.write_bytes(out.child("real/a.png"), b"image", confine_to=out, overwrite=False)
    assert (Path(out.path) / "real" / "a.png").read_bytes() == b"image"


def test_a_write_replaces_a_symlink_at_the_final_name_instead_of_following_it(tree: tuple[Location, Path]) -> None:
    out, outside = tree
    storage = Storage()
    with pytest.raises(StorageError, match="already exists"):
        storage.write_bytes(out.child("linked.png"), b"new", overwrite=False, confine_to=out)
    storage.write_bytes(out.child("linked.png"), b"new", confine_to=out)
    assert (outside / "victim.png").read_bytes() == b"not yours"
    assert not os.path.islink(out.child("linked.png").path)


def test_a_confined_write_creates_no_folder_through_a_symlink(tree: tuple[Location, Path]) -> None:
    out, outside = tree
    with pytest.raises(OutsidePrefix):
        Storage().write_bytes(out.child("escape/new/deeper/a.png"), b"image", confine_to=out)
    assert sorted(os.listdir(outside)) == ["victim.png"]


def test_confined_uploads_are_checked_too(tree: tuple[Location, Path], tmp_path: Path) -> None:
    out, outside = tree
    source = tmp_path / "source.bin"
    source.write_bytes(b"data")
    with pytest.raises(OutsidePrefix):
        Storage().upload_file(source, out.child("escape/copy.bin"), confine_to=out)
    assert sorted(os.listdir(outside)) == ["victim.png"]


# --- names no store can hold -------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["/data/out", "s3://bucket/out"])
@pytest.mark.parametrize(("name", "reason"), [
    ("a\x00b.png", r"control character '\\x00'"),
    ("a\nb.png", r"control character '\\n'"),
    ("sub/\x1b[31m.png", r"control character '\\x1b'"),
    ("x" * 252 + ".png", "is 256 bytes; files and folders can have at most 255"),
    ("\u00e9" * 127 + ".png", "is 258 bytes"),
    ("d" * 256 + "/a.png", "is 256 bytes"),
])
def test_names_that_no_store_can_hold_are_refused(base: str, name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_storable_name(parse_location(base).child(name))


def test_length_limits_are_those_of_each_store() -> None:
    too_long_for_s3 = "/".join(["d" * 200] * 5) + "/" + "x" * 20
    check_storable_name(parse_location("/data").child(too_long_for_s3))
    with pytest.raises(ValueError, match=r"is 1025 bytes; an S3 key can have at most 1024"):
        check_storable_name(parse_location("s3://bucket").child(too_long_for_s3))
    check_storable_name(parse_location("s3://bucket").child(too_long_for_s3[:-1]))
    with pytest.raises(ValueError, match=r"a local path can have at most 4095"):
        check_storable_name(parse_location("/data").child("/".join(["d" * 250] * 17)))


def test_names_at_the_limit_are_accepted() -> None:
    for base in ("/data/out", "s3://bucket/out"):
        check_storable_name(parse_location(base).child("x" * 251 + ".png"))
        check_storable_name(parse_location(base).child("\u00e9" * 125 + "1.png"))


def test_s3_keys_must_be_valid_utf8() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        check_storable_name(parse_location("s3://bucket/out").child("caf\udce9.png"))
    check_storable_name(parse_location("/data/out").child("caf\udce9.png"))
