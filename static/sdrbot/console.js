// Console keyboard shortcuts: Ctrl+Enter (or Cmd+Enter) in the reply editor sends it.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLTextAreaElement) || !target.hasAttribute("data-send-shortcut")) return;
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    const form = target.form;
    const button = form && form.querySelector("button[type=submit]");
    if (button && !button.disabled) form.requestSubmit(button);
  }
});
