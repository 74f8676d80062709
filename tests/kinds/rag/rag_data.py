"""A tiny WattBot-style corpus (one document a real PDF), questions in the WattBot CSV format
(two unanswerable), and a tiny local sentence encoder: everything the RAG tests need, no network."""

from __future__ import annotations

import csv
from pathlib import Path

DOCS = {
    "gpu_energy": "Training the model Alpha-7 consumed 1287 MWh of electricity.\n\n"
    "The training run used 1024 GPUs for 30 days in a single cluster.",
    "water": "Data centers used 5.6 billion liters of water for cooling in 2022.\n\n"
    "Water usage effectiveness was 1.8 liters per kWh across the fleet.",
    "carbon": "The carbon intensity of the grid in Virginia is 390 grams CO2 per kWh.\n\n"
    "Inference emissions for the assistant reached 12 tonnes of CO2 per month.",
    "hardware": "<html><body><p>The H100 GPU has a thermal design power of 700 watts.</p>"
    "<p>The older A100 accelerator draws 400 watts at peak load.</p></body></html>",
}
QUESTIONS = [
    ("q1", "How much electricity did training Alpha-7 consume?", "1287", "MWh", ["gpu_energy"]),
    ("q2", "How many liters of water did data centers use for cooling in 2022?", "5.6", "billion liters", ["water"]),
    ("q3", "What is the thermal design power of the H100 GPU?", "700", "watts", ["hardware"]),
    ("q4", "What is the carbon intensity of the grid in Virginia?", "390", "gCO2/kWh", ["carbon"]),
    ("q5", "How many penguins live on the far side of the moon?", "is_blank", "is_blank", []),
    ("q6", "What was the training energy of the Beta-9 model?", "is_blank", "is_blank", []),
]
COLUMNS = [
    "id",
    "question",
    "answer",
    "answer_value",
    "answer_unit",
    "ref_id",
    "ref_url",
    "supporting_materials",
    "explanation",
]


def pdf_bytes(text: str) -> bytes:
    """A minimal valid one-page PDF showing `text` (one line per paragraph) in Helvetica."""
    lines = [ln for ln in text.replace("(", "").replace(")", "").split("\n") if ln.strip()]
    content = "BT /F1 10 Tf 40 750 Td 14 TL " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gpu_energy.pdf").write_bytes(pdf_bytes(DOCS["gpu_energy"]))
    (directory / "water.md").write_text("# Water\n\n" + DOCS["water"])
    (directory / "carbon.txt").write_text(DOCS["carbon"])
    (directory / "hardware.html").write_text(DOCS["hardware"])
    return directory


def write_questions(path: Path, rows=QUESTIONS) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for qid, question, value, unit, refs in rows:
            w.writerow(
                {
                    "id": qid,
                    "question": question,
                    "answer": value if value == "is_blank" else f"{value} {unit}",
                    "answer_value": value,
                    "answer_unit": unit,
                    "ref_id": str(refs) if refs else "is_blank",
                    "ref_url": "is_blank",
                    "supporting_materials": "is_blank",
                    "explanation": "is_blank",
                }
            )
    return path


def vocabulary() -> list[str]:
    import re

    words = set()
    for text in [*DOCS.values(), *(q[1] for q in QUESTIONS)]:
        words.update(w.lower() for w in re.findall(r"\w+|[^\w\s]", text))
    return sorted(words)


def build_encoder(path: Path) -> Path:
    from orchestrator.generation.tiny import build_encoder as build

    return build(path, vocabulary())
