import pytest
from conftest import FORMATS, GSM8K_ROWS, make_dataset

from hf_patchdist.formats import DatasetFormat, detect_dataset_format, detect_format, read_example, to_prompt_completion, write_answer


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_and_read(fmt):
    dataset = make_dataset(fmt)
    spec = detect_dataset_format(dataset)
    assert spec.format == DatasetFormat(fmt)
    example = read_example(dataset[0], spec)
    assert example.error is None
    assert example.question == GSM8K_ROWS[0]["question"]
    assert example.answer == GSM8K_ROWS[0]["answer"]


def test_context_of_conversations():
    spec = detect_dataset_format(make_dataset("messages"))
    example = read_example(make_dataset("messages")[0], spec)
    assert [m["content"] for m in example.context] == ["Hi", "Hello! Ask me a math question."]
    conv = make_dataset("conversational_prompt_completion")
    example = read_example(conv[0], detect_dataset_format(conv))
    assert example.context == [{"role": "system", "content": "Be brief."}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_answer_keeps_structure(fmt):
    dataset = make_dataset(fmt)
    spec = detect_dataset_format(dataset)
    row = dataset[1]
    new = write_answer(row, spec, "NEW")
    assert set(new) == {spec.answer_column}
    patched = {**row, **new}
    assert read_example(patched, spec).answer == "NEW"
    assert read_example(patched, spec).question == GSM8K_ROWS[1]["question"]
    assert type(patched[spec.answer_column]) is type(row[spec.answer_column])
    assert read_example(row, spec).answer == GSM8K_ROWS[1]["answer"], "the input row must not be modified"


def test_missing_columns_name_the_formats():
    with pytest.raises(ValueError, match="messages.*prompt.*completion"):
        detect_format(["text", "label"])
    with pytest.raises(ValueError, match=r"\['solution'\]"):
        detect_format(["question", "answer"], question_column="question", answer_column="solution")


@pytest.mark.parametrize(
    "row,error",
    [
        ({"question": "q", "answer": None}, "missing_answer"),
        ({"question": "q", "answer": ""}, "empty_answer"),
        ({"question": "q", "answer": 3}, "non_string_answer"),
        ({"question": None, "answer": "#### 3"}, "missing_question"),
    ],
)
def test_bad_values_are_reported_not_raised(row, error):
    spec = detect_format(["question", "answer"])
    assert read_example(row, spec).error == error


def test_plain_rows_become_prompt_completion():
    spec = detect_format(["question", "answer"])
    converted = to_prompt_completion(GSM8K_ROWS[0], spec)
    assert converted["prompt"] == [{"role": "user", "content": GSM8K_ROWS[0]["question"]}]
    assert converted["completion"] == [{"role": "assistant", "content": GSM8K_ROWS[0]["answer"]}]
