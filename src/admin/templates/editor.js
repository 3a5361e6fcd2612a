// The templates editor's live preview: while the user types, the draft is posted (debounced)
// to the preview endpoint; the answer replaces the preview frames and the problem list, and
// Save is disabled while the draft has problems. Served from this origin (CSP script-src
// 'self'); the server renders the same page without it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const url = meta("preview-url");
  const csrf = meta("csrf-token");
  const DEBOUNCE_MS = 250;
  let timer = null;
  let sent = 0;

  function problemText(p) {
    const part = p.part === "html" ? "HTML part" : p.part === "text" ? "Text part" : "Template folder";
    let at = "";
    if (p.line > 0) at = `, line ${p.line}` + (p.column > 0 ? `, column ${p.column}` : "");
    return `${part}${at}: ${p.message}`;
  }

  // Select the line (and column) of a problem in its textarea.
  function jump(p) {
    const area = $(p.part);
    if (!area || p.line < 1) return;
    const lines = area.value.split("\n");
    let start = 0;
    for (let i = 0; i < p.line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    const line = lines[p.line - 1] || "";
    area.focus();
    area.setSelectionRange(start + Math.max(0, p.column - 1), start + line.length);
  }

  function show(doc) {
    const list = $("problems");
    list.replaceChildren();
    for (const p of doc.problems) {
      const li = document.createElement("li");
      li.textContent = problemText(p);
      li.dataset.part = p.part;
      li.dataset.line = p.line;
      li.dataset.column = p.column;
      li.addEventListener("click", () => jump(p));
      list.append(li);
    }
    $("save").disabled = doc.problems.length > 0;
    $("note").textContent = doc.note || "";
    const err = $("preview-error");
    err.textContent = doc.error || "";
    err.hidden = !doc.error;
    // A draft with problems keeps the last good preview on screen.
    if (doc.problems.length === 0) {
      $("preview-html").srcdoc = doc.html || "";
      $("preview-text").textContent = doc.text || "";
      $("bottom").hidden = !doc.bottom_html;
      $("preview-bottom-html").srcdoc = doc.bottom_html || "";
      $("preview-bottom-text").textContent = doc.bottom_text || "";
    }
    document.body.dataset.previews = String(Number(document.body.dataset.previews || 0) + 1);
  }

  async function refresh() {
    const mine = ++sent;
    $("status").textContent = "updating preview…";
    const body = {
      html: $("html").value,
      text: $("text").value,
      q: $("user").value,
      audience: $("audience").value,
      message: $("message").value,
    };
    try {
      const r = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify(body),
      });
      if (mine !== sent) return; // a newer draft is on its way
      if (!r.ok) {
        $("status").textContent = `preview failed: ${r.status} ${await r.text()}`;
        return;
      }
      show(await r.json());
      $("status").textContent = "";
    } catch (e) {
      if (mine === sent) $("status").textContent = `preview failed: ${e}`;
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  for (const id of ["html", "text", "user"]) $(id).addEventListener("input", later);
  for (const id of ["audience", "message"]) $(id).addEventListener("change", refresh);
  for (const li of $("problems").children) {
    li.addEventListener("click", () =>
      jump({ part: li.dataset.part, line: Number(li.dataset.line), column: Number(li.dataset.column) }));
  }
  document.body.dataset.editor = "ready";
})();
