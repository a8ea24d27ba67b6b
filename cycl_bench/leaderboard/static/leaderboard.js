// Sortable, filterable leaderboard tables. Plain DOM, no dependencies: works from file://.
"use strict";

function cellValue(row, column, type) {
  const raw = row.cells[column].dataset.value;
  if (raw === undefined || raw === "") return null;
  return type === "number" ? parseFloat(raw) : raw.toLowerCase();
}

function sortTable(table, column, direction) {
  const header = table.tHead.rows[0].cells[column];
  const type = header.dataset.type;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).filter((row) => !row.classList.contains("empty"));
  const sign = direction === "ascending" ? 1 : -1;
  rows.sort((a, b) => {
    const x = cellValue(a, column, type);
    const y = cellValue(b, column, type);
    if (x === null || y === null) return (x === null) - (y === null); // empty cells last
    if (x < y) return -sign;
    if (x > y) return sign;
    return 0;
  });
  for (const cell of table.tHead.rows[0].cells) cell.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", direction);
  for (const row of rows) body.appendChild(row);
}

function filterTable(table, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  const rows = Array.from(table.tBodies[0].rows).filter((row) => !row.classList.contains("empty"));
  for (const row of rows) {
    const text = row.textContent.toLowerCase();
    const match = words.every((word) => text.includes(word));
    row.hidden = !match;
    if (match) shown += 1;
  }
  const counter = document.querySelector(`.row-count[data-table="${table.id}"]`);
  if (counter) counter.textContent = `${shown} of ${rows.length} rows`;
}

for (const table of document.querySelectorAll("table.sortable")) {
  Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
    header.querySelector("button").addEventListener("click", () => {
      const next = header.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      sortTable(table, column, next);
    });
  });
}

for (const input of document.querySelectorAll("input.table-filter")) {
  const table = document.getElementById(input.dataset.table);
  input.addEventListener("input", () => filterTable(table, input.value));
}
