import pytest

from fdpkit.data.frames import frame_number, index_frames, links_outside
from fdpkit.data.preprocess.sampling import sample_onset_offset


@pytest.mark.parametrize(
    "name, number",
    [("img46.jpg", 46), ("reg_img46.jpg", 46), ("006_05562.jpg", 5562), ("12.png", 12), ("img.jpg", None)],
)
def test_frame_number(name, number):
    assert frame_number(name) == number


def test_index_sorts_numerically_and_skips_non_images(tmp_path):
    for name in ["img10.jpg", "img9.jpg", "img100.jpg", "notes.txt", "Thumbs.db"]:
        (tmp_path / name).write_bytes(b"x")
    frames = index_frames(tmp_path)
    assert list(frames) == [9, 10, 100]
    assert frames[100].name == "img100.jpg"


def test_two_files_with_one_number_is_an_error(tmp_path):
    (tmp_path / "img46.jpg").write_bytes(b"x")
    (tmp_path / "reg_img46.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="number 46"):
        index_frames(tmp_path)


@pytest.mark.parametrize("name, number", [("img001.jpg", 1), ("img099.jpg", 99), ("img1000.jpg", 1000),
                                          ("img\u0664\u0666.jpg", None), ("img\uff14\uff16.jpg", None)])
def test_frame_number_takes_ascii_digits_only(name, number):
    """CAS(ME)^2 pads to 3 digits (img001.jpg); Arabic-Indic or full-width digits are not frame numbers."""
    assert frame_number(name) == number


def test_index_leaves_out_names_with_non_ascii_digits(tmp_path):
    for name in ["img001.jpg", "img002.jpg", "img\u0663.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    assert list(index_frames(tmp_path)) == [1, 2]


def test_links_outside_names_only_links_leaving_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "img1.jpg").write_bytes(b"x")
    (outside / "img2.jpg").write_bytes(b"x")
    (root / "img2.jpg").symlink_to(outside / "img2.jpg")
    (root / "img3.jpg").symlink_to(root / "img1.jpg")
    found = links_outside(sorted(root.iterdir()), root.resolve())
    assert found == [("img2.jpg", (outside / "img2.jpg").resolve())]


def test_sampler_takes_the_nearest_frame_to_each_evenly_spaced_number():
    """A dropped frame is replaced by its neighbour; the other samples keep their time (before, the
    samples were spread over the remaining files, shifting every sample after the gap)."""
    frames = [n for n in range(100, 129) if n != 108]           # 108 dropped
    sampled = sample_onset_offset(frames, 100, 128, 8)
    assert sampled.numbers == (100, 104, 107, 112, 116, 120, 124, 128)   # 108 -> 107 (tie with 109: the earlier)
    gap = sample_onset_offset([n for n in range(1, 30) if n not in (9, 10)], 1, 29, 8)
    assert gap.numbers == (1, 5, 8, 13, 17, 21, 25, 29)   # 9 -> nearest 8 (earlier on a tie with 11)
    assert "2 frame number(s) missing between onset 1 and offset 29" in gap.notes[0]
    full = sample_onset_offset(range(1, 30), 1, 29, 8)
    assert full.numbers == (1, 5, 9, 13, 17, 21, 25, 29) and full.notes == ()
