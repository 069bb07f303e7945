"""The HTML report, rendering only: page (collects the sections, renders templates/report.html.j2
with jinja2), blocks (what a section is made of), context (what sections read), sections/ (one
module per section) and baselines/ (published numbers as data files, their sources cited)."""
