// The `upload` control: a CSV file of one's own. The server reads it with the reader of
// `gradsight train --data FILE.csv` (POST /api/upload) and answers with the reader's own lines
// ("read data.csv: 199 rows, 4 columns, header: …"), shown under the control; the file then
// becomes the network's data set ("configure" with the upload's id). A refusal is one line in
// the page's message area.

import { t } from "./i18n.js";

export class UploadControl {
  constructor(root, { withToken, say, configure }) {
    this.el = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.withToken = withToken;
    this.say = say;
    this.configure = configure;
    this.current = null; // the server's answer for the file in use
    this.maxBytes = undefined; // the server's limit, read from /api/health on first use
    this.el("upload").disabled = false;
    this.el("upload").addEventListener("change", () => this.send());
  }

  async limit() {
    if (this.maxBytes === undefined) {
      try {
        const health = await (await fetch(this.withToken("/api/health"))).json();
        this.maxBytes = health.limits.max_upload_bytes;
      } catch {
        this.maxBytes = null; // the server will say it
      }
    }
    return this.maxBytes;
  }

  async send() {
    const input = this.el("upload");
    const file = input.files && input.files[0];
    if (!file) return;
    const info = this.el("upload-info");
    const limit = await this.limit();
    if (limit && file.size > limit) {
      input.value = "";
      this.say("message.upload_refused", {}, t("upload.too_big",
        { name: file.name, mb: Math.round((limit / 2 ** 20) * 10) / 10 }));
      return;
    }
    info.hidden = false;
    info.textContent = t("upload.reading", { name: file.name });
    let answer;
    try {
      const response = await fetch(
        this.withToken(`/api/upload?name=${encodeURIComponent(file.name)}`),
        { method: "POST", body: file, headers: { "Content-Type": "text/csv" } },
      );
      answer = await response.json();
    } catch (error) {
      answer = { type: "error", message: String(error.message || error) };
    }
    input.value = ""; // the same file may be chosen again
    if (answer.type !== "upload") {
      info.hidden = !this.current;
      if (this.current) info.textContent = this.current.lines.join("\n");
      this.say("message.upload_refused", {}, answer.message);
      return;
    }
    this.current = answer;
    info.textContent = answer.lines.join("\n");
    this.say(null);
    const select = this.el("dataset");
    let option = select.querySelector('option[value="upload"]');
    if (!option) {
      option = document.createElement("option");
      option.value = "upload";
      select.append(option);
    }
    select.value = "upload";
    this.relabel();
    this.configure();
  }

  // The uploaded file's entry in the data-set list, in the page's language.
  relabel() {
    const option = this.el("dataset").querySelector('option[value="upload"]');
    if (option && this.current) option.textContent = t("dataset.upload", { name: this.current.name });
  }

  // The network's "configure" message, naming the uploaded file when it is the chosen data set.
  amend(message) {
    if (message.type === "configure" && this.current && this.el("dataset").value === "upload") {
      return { ...message, upload: this.current.upload };
    }
    return message;
  }
}
