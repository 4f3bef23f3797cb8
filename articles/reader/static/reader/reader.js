// Like and dismiss without a page reload: send the interaction to the API, then swap in the fresh
// For you list that the server renders. Without JavaScript the same forms post to the reader itself.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  const api = form.dataset.interaction;
  if (!api || !event.submitter) return;
  event.preventDefault();
  const kind = event.submitter.value;
  const title = form.closest(".card").querySelector("h2").textContent.trim();
  const status = document.getElementById("status");
  form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    const sent = await fetch(api, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
      body: JSON.stringify({ kind }),
      credentials: "same-origin",
    });
    if (!sent.ok) throw new Error(`the server answered ${sent.status}`);
    const list = document.getElementById("for-you-list");
    if (list) {
      const fresh = await fetch(list.dataset.refresh || "/for-you/list/", { credentials: "same-origin" });
      if (!fresh.ok) throw new Error(`the server answered ${fresh.status}`);
      list.outerHTML = await fresh.text();
      document.getElementById("for-you-list").focus();
    }
    if (status) status.textContent = kind === "like" ? `Liked “${title}”: the list now leans its way.` : `Dismissed “${title}”.`;
  } catch (error) {
    if (status) status.textContent = `Could not record that (${error.message}). Try again.`;
    form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
});
