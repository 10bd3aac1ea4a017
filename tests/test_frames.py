import pytest

from fdpkit.data.frames import frame_number, index_frames


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
