// The outbox list refreshes itself: poll the outbox's state tag (a cheap 304 while
// nothing changes) and rebuild the rows from the JSON API when it moves.
// Text goes in with textContent only: a subject is never markup.
"use strict";
(function () {
  const table = document.getElementById("messages");
  if (!table) return;
  const base = table.dataset.base;
  let tag = null;

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render(messages) {
    const body = document.createElement("tbody");
    for (const m of messages) {
      const row = body.insertRow();
      row.dataset.id = m.id;
      cell(row, m.date, "date");
      cell(row, m.from);
      cell(row, m.to);
      const link = document.createElement("a");
      link.href = base + "m/" + encodeURIComponent(m.id) + "/";
      link.textContent = m.subject || "(no subject)";
      cell(row, "").appendChild(link);
      cell(row, String(m.size), "num");
      cell(row, m.attachments ? String(m.attachments) : "", "num");
    }
    table.tBodies[0].replaceWith(body);
    const count = document.getElementById("count");
    count.textContent = messages.length + (messages.length === 1 ? " message" : " messages");
    const empty = document.getElementById("empty");
    if (empty) empty.hidden = messages.length > 0;
  }

  async function poll() {
    try {
      const headers = tag ? { "If-None-Match": '"' + tag + '"' } : {};
      const answer = await fetch(base + "api/state", { headers, cache: "no-store" });
      if (answer.status === 200) {
        const seen = (await answer.json()).state;
        if (tag !== null && seen !== tag) {
          const list = await fetch(base + "api/messages", { cache: "no-store" });
          render((await list.json()).messages);
        }
        tag = seen;
      }
    } catch (e) {
      // The server is restarting or gone: try again on the next tick.
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
