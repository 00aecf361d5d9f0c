// app_server: a tab whose session cannot come back says so and recovers (--on-session-lost).
//
// BokehJS reconnects a lost websocket with the page's token, and the server opens a new session
// from it while the token is valid. Once the token has expired (--session-token-expiration) every
// reconnect is refused, and BokehJS would retry a few times and then sit stale. This script
// listens to each document's "connection_lost" event: when the token has expired, or BokehJS
// has given up, it shows a notice and, in "reload" mode, reloads the page once the server
// answers again (a fresh page gets a fresh token, through the login page if there is one).
(function (config) {
  "use strict";
  if (window.__app_server_session_lost) {
    return; // several embeds on one page: one watcher for all
  }
  window.__app_server_session_lost = true;
  var loaded = Date.now();
  var hooked = new WeakSet();
  var notice = null;

  function tokenExpired(connection) {
    // the server's expiry (its clock) or the token's lifetime since this page loaded (ours)
    if (Date.now() - loaded >= config.token_lifetime * 1000) {
      return true;
    }
    try {
      var payload = connection.token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
      payload += "===".slice((payload.length + 3) % 4);
      var expiry = JSON.parse(atob(payload)).session_expiry;
      return typeof expiry === "number" && Date.now() / 1000 >= expiry;
    } catch (error) {
      return false;
    }
  }

  function show(text, withButton) {
    if (typeof console !== "undefined") {
      console.warn("[app_server] " + text); // also in the log of a page that has reloaded since
    }
    if (notice === null) {
      notice = document.createElement("div");
      notice.id = "app-server-session-lost";
      notice.setAttribute("role", "alert");
      var s = notice.style; // the CSSOM, which a Content-Security-Policy without inline styles allows
      s.position = "fixed";
      s.top = "0";
      s.left = "0";
      s.right = "0";
      s.zIndex = "2147483647";
      s.padding = "0.6em 1em";
      s.background = "#fff3cd";
      s.color = "#533f03";
      s.borderBottom = "1px solid #e0c36c";
      s.font = "15px system-ui, sans-serif";
      s.textAlign = "center";
      document.body.appendChild(notice);
    }
    notice.textContent = text + " ";
    if (withButton) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = "Reload";
      button.addEventListener("click", function () { window.location.reload(); });
      notice.appendChild(button);
    }
  }

  var LOST = "The connection to the server was lost and this page's session cannot be restored.";

  function probeOf(connection) {
    // the app's server: this page's own, or (autoload.js in another site's page) the app's URL,
    // asked without CORS (an opaque answer still says the server is up)
    var page = { url: window.location.href, mode: "same-origin" };
    if (connection == null || typeof connection.url !== "string") {
      return page;
    }
    var app = new URL(connection.url.replace(/^ws/, "http"), window.location.href);
    if (app.origin === window.location.origin) {
      return page;
    }
    app.pathname = app.pathname.replace(/\/ws$/, "") || "/";
    app.search = "";
    return { url: app.href, mode: "no-cors" };
  }

  function reloadWhenServing(probe, wait) {
    // reload only once the app's server answers, so a server still down (or restarting) does not
    // leave an error page or an embed that cannot load
    var redirect = probe.mode === "no-cors" ? "follow" : "manual"; // no-cors follows only
    fetch(probe.url, { cache: "no-store", credentials: "same-origin", redirect: redirect, mode: probe.mode })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.type === "opaque" || response.status < 500) {
          window.location.reload();
        } else {
          throw new Error("HTTP " + response.status);
        }
      })
      .catch(function () {
        show(LOST + " The server is not answering; trying again in " + wait + " s.", true);
        setTimeout(function () { reloadWhenServing(probe, Math.min(wait * 2, 30)); }, wait * 1000);
      });
  }

  function lost(connection) {
    if (config.mode === "notify") {
      show(LOST + " Reload the page to start a new session.", true);
    } else {
      show(LOST + " Reloading…", false);
      var probe = probeOf(connection);
      setTimeout(function () { reloadWhenServing(probe, 1); }, config.reload_delay * 1000);
    }
  }

  function onConnectionLost(_, event) {
    if (notice !== null) {
      return; // already told
    }
    var connection = event.connection && event.connection.deref ? event.connection.deref() : null;
    // a valid token reconnects and gets a session (a new one on another server); an expired
    // token is refused by every server, and a null timeout means BokehJS has given up
    if (event.timeout == null || (connection != null && tokenExpired(connection))) {
      lost(connection);
    }
  }

  function hook() {
    var documents = window.Bokeh && window.Bokeh.documents;
    if (!documents) {
      return;
    }
    for (var i = 0; i < documents.length; i++) {
      var doc = documents[i];
      if (!hooked.has(doc)) {
        hooked.add(doc);
        doc.on_event("connection_lost", onConnectionLost);
      }
    }
  }

  hook();
  setInterval(hook, 250); // documents appear once their sessions connect
})(__APP_SERVER_CONFIG__);
