// The job page: poll the job's JSON until it finishes. The only script in the panel;
// everything else works without JavaScript (the page also says the state when loaded).
"use strict";
(function () {
  const box = document.getElementById("job");
  if (!box || box.dataset.active !== "yes") return;
  const url = box.dataset.jobUrl;
  const state = document.getElementById("job-state");
  const bar = document.getElementById("job-progress");
  const message = document.getElementById("job-message");
  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const job = await response.json();
      state.textContent = job.state;
      if (job.progress !== null) { bar.value = job.progress; bar.textContent = Math.round(job.progress * 100) + " %"; }
      message.textContent = job.message;
      box.dataset.active = job.active ? "yes" : "no";
      if (job.active) setTimeout(poll, 1000);
    } catch (err) {
      message.textContent = "Lost contact with the server (" + err.message + "); retrying.";
      setTimeout(poll, 3000);
    }
  }
  setTimeout(poll, 500);
})();
