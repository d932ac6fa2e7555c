/*
 * crowdsource live leaderboard page.
 *
 * Reads the public REST API after every WebSocket `hello` (so a reconnect resyncs) and
 * applies events in between; nothing polls on a timer. Every string from the server is
 * put on the page with textContent, and escaped before Plotly (which reads a little HTML).
 */
(function () {
  'use strict';

  var MIN_BACKOFF_MS = 500;
  var MAX_BACKOFF_MS = 15000;
  var BOARD_FALLBACK_MS = 400;
  var CHART_LIMIT = 15;

  // The page lives at <prefix>/leaderboard(.html); the API at <prefix>/api/v1.
  var prefix = window.location.pathname.replace(/\/leaderboard(\.html)?\/?$/, '');
  var apiBase = window.location.origin + prefix + '/api/v1';
  var eventsUrl = apiBase.replace(/^http/, 'ws') + '/events';

  var state = {
    competitions: [],
    boards: {}, // "<id>:<public|private>" -> leaderboard
    loaded: false,
    connection: 'connecting', // connecting | live | down
    retryMs: 0,
    error: null
  };
  var sections = {}; // competition id -> {root, ...elements}
  var pendingBoards = {};
  var statusTimer = null;
  var syncSeq = 0;

  // ---- helpers ----------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** Plotly renders a few HTML tags in its text: escape server strings for it. */
  function plotlyText(value) {
    return String(value)
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;');
  }

  function formatTime(iso) {
    if (!iso) return '—';
    var date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso);
    return date.toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'
    });
  }

  function formatScore(score) {
    if (score === null || score === undefined || isNaN(score)) return '—';
    return Number(score).toLocaleString(undefined, { maximumSignificantDigits: 5 });
  }

  function boardKey(id, which) {
    return id + ':' + which;
  }

  function statusOf(c) {
    if (c.status === 'closed') return 'closed';
    var now = Date.now();
    var opens = c.opens_at ? Date.parse(c.opens_at) : NaN;
    var closes = c.closes_at ? Date.parse(c.closes_at) : NaN;
    if (!isNaN(closes) && now >= closes) return 'closed';
    if (!isNaN(opens) && now < opens) return 'upcoming';
    return c.status === 'upcoming' && isNaN(opens) ? 'upcoming' : 'open';
  }

  function getJSON(path) {
    return fetch(apiBase + path, { headers: { Accept: 'application/json' }, cache: 'no-store' })
      .then(
        function (response) {
          return response.json().then(
            function (body) { return { response: response, body: body }; },
            function () { return { response: response, body: null }; }
          );
        },
        function () {
          throw new Error('Cannot reach the crowdsource server at ' + window.location.origin + '.');
        }
      )
      .then(function (result) {
        if (!result.response.ok) {
          var message = result.body && result.body.message ? ': ' + result.body.message : '.';
          var error = new Error('The server answered ' + result.response.status + message);
          error.status = result.response.status;
          throw error;
        }
        return result.body;
      });
  }

  // ---- data -------------------------------------------------------------------

  function resync() {
    var seq = ++syncSeq;
    var competitions;
    return getJSON('/competitions?status=all')
      .then(function (body) {
        competitions = body.competitions || [];
        return getJSON('/leaderboards').then(
          function (b) { return b.leaderboards || []; },
          function (err) {
            if (!err.status) throw err;
            return Promise.all(competitions.map(function (c) {
              return getJSON('/competitions/' + c.id + '/leaderboard?board=public');
            }));
          }
        );
      })
      .then(function (boards) {
        if (seq !== syncSeq) return;
        state.competitions = competitions;
        state.boards = {};
        boards.forEach(function (board) {
          state.boards[boardKey(board.competition_id, board.board || 'public')] = board;
        });
        state.loaded = true;
        state.error = null;
        renderAll();
      })
      .catch(function (err) {
        if (seq !== syncSeq) return;
        state.error = err.message;
        renderNotice();
      });
  }

  function fetchBoard(id, which) {
    return getJSON('/competitions/' + id + '/leaderboard?board=' + which).then(
      function (board) {
        state.boards[boardKey(id, board.board || which)] = board;
        renderCompetition(id, true);
      },
      function () { /* a private board may not be readable yet */ }
    );
  }

  function scheduleBoard(id) {
    if (pendingBoards[id]) return;
    pendingBoards[id] = window.setTimeout(function () {
      delete pendingBoards[id];
      fetchBoard(id, 'public');
    }, BOARD_FALLBACK_MS);
  }

  function upsertCompetition(competition) {
    for (var i = 0; i < state.competitions.length; i++) {
      if (state.competitions[i].id === competition.id) {
        state.competitions[i] = competition;
        return;
      }
    }
    state.competitions.unshift(competition);
  }

  function onEvent(event) {
    var data = event.data || {};
    var id = event.competition_id;
    switch (event.type) {
      case 'competition.created':
      case 'competition.closed':
      case 'competition.updated':
        if (typeof data.id !== 'number') return;
        upsertCompetition(data);
        state.loaded = true;
        renderAll();
        if (event.type === 'competition.closed') fetchBoard(data.id, 'private');
        return;
      case 'leaderboard.changed':
        if (!Array.isArray(data.entries)) return;
        if (pendingBoards[data.competition_id]) {
          window.clearTimeout(pendingBoards[data.competition_id]);
          delete pendingBoards[data.competition_id];
        }
        state.boards[boardKey(data.competition_id, data.board || 'public')] = data;
        if (!sections[data.competition_id]) {
          resync();
        } else {
          renderCompetition(data.competition_id, true);
        }
        return;
      case 'competition.deleted':
        resync();
        return;
      case 'submission.scored':
      case 'submission.failed':
      case 'competition.resolved':
        if (typeof id === 'number') scheduleBoard(id);
        return;
      default:
        return;
    }
  }

  // ---- WebSocket with backoff -------------------------------------------------

  var attempt = 0;

  function connect() {
    var socket;
    try {
      socket = new WebSocket(eventsUrl);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket.onopen = function () {
      attempt = 0;
    };
    socket.onmessage = function (message) {
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      if (event.type === 'hello') {
        state.connection = 'live';
        renderNotice();
        resync();
      } else {
        onEvent(event);
      }
    };
    socket.onclose = function () {
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    var base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * Math.pow(2, attempt));
    var delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    attempt += 1;
    state.connection = 'down';
    state.retryMs = delay;
    renderNotice();
    window.setTimeout(connect, delay);
  }

  // ---- rendering --------------------------------------------------------------

  function renderNotice() {
    var live = document.getElementById('cs-live');
    live.textContent = state.connection === 'live' ? '● live' : '○ offline';
    live.classList.toggle('cs-is-live', state.connection === 'live');

    var notice = document.getElementById('cs-notice');
    var text = '';
    var kind = '';
    if (state.connection === 'down') {
      kind = 'unreachable';
      text = 'Lost the connection to the crowdsource server at ' + window.location.origin +
        '. Retrying in ' + Math.max(1, Math.round(state.retryMs / 1000)) + ' s.' +
        (state.loaded ? ' Showing the last data received.' : '');
    } else if (state.error) {
      kind = 'error';
      text = state.error;
    } else if (!state.loaded) {
      kind = 'loading';
      text = 'Loading competitions…';
    } else if (state.competitions.length === 0) {
      kind = 'empty';
      text = 'No competitions yet. They will appear here as soon as one is created.';
    }
    notice.textContent = text;
    notice.dataset.state = kind;
    notice.hidden = !kind;
  }

  function renderAll() {
    var main = document.getElementById('cs-competitions');
    var seen = {};
    state.competitions.forEach(function (c, index) {
      seen[c.id] = true;
      var section = sections[c.id] || createSection(c.id);
      if (main.children[index] !== section.root) {
        main.insertBefore(section.root, main.children[index] || null);
      }
      renderCompetition(c.id, false);
    });
    Object.keys(sections).forEach(function (id) {
      if (!seen[id]) {
        var gone = sections[id];
        if (window.Plotly) window.Plotly.purge(gone.chart);
        gone.root.remove();
        delete sections[id];
      }
    });
    renderNotice();
    scheduleStatusRefresh();
  }

  function createSection(id) {
    var root = el('section', 'cs-competition');
    root.dataset.competitionId = String(id);
    var section = {
      root: root,
      title: el('h2', 'cs-title'),
      meta: el('div', 'cs-meta'),
      description: el('p', 'cs-description'),
      chart: el('div', 'cs-chart'),
      board: el('div', 'cs-board-wrap'),
      lastRanks: null
    };
    root.appendChild(section.title);
    root.appendChild(section.meta);
    root.appendChild(section.description);
    root.appendChild(section.chart);
    root.appendChild(section.board);
    sections[id] = section;
    return section;
  }

  function shownBoard(id) {
    return state.boards[boardKey(id, 'private')] || state.boards[boardKey(id, 'public')] || null;
  }

  function renderCompetition(id, flash) {
    var c = null;
    for (var i = 0; i < state.competitions.length; i++) {
      if (state.competitions[i].id === id) c = state.competitions[i];
    }
    var section = sections[id];
    if (!c || !section) return;
    var board = shownBoard(id);
    var higher = board ? board.higher_is_better : c.higher_is_better;
    var metric = board ? board.metric : c.metric;

    section.title.textContent = c.title;
    section.meta.replaceChildren();
    var status = statusOf(c);
    section.meta.appendChild(el('span', 'cs-status cs-status-' + status, status));
    var facts = [
      c.type,
      metric + ' (' + (higher ? 'higher' : 'lower') + ' is better)',
      c.closes_at ? 'closes ' + formatTime(c.closes_at) : 'no closing time',
      'host ' + (c.host ? c.host.name : '?'),
      board ? board.board + ' board' : 'no board yet'
    ];
    section.meta.appendChild(document.createTextNode(' · ' + facts.join(' · ')));
    section.description.textContent = c.description || '';
    section.description.hidden = !c.description;

    var entries = board ? board.entries : [];
    renderTable(section, entries, flash);
    renderChart(section, entries, metric, higher);
  }

  function renderTable(section, entries, flash) {
    section.board.replaceChildren();
    if (!entries.length) {
      section.board.appendChild(el('p', 'cs-empty', 'No scored submissions yet.'));
      section.lastRanks = {};
      return;
    }
    var table = el('table', 'cs-board');
    var head = el('tr');
    [['Rank', 'cs-num'], ['Name', ''], ['Best score', 'cs-num'], ['Submissions', 'cs-num'],
      ['Last submission', '']].forEach(function (h) {
      head.appendChild(el('th', h[1], h[0]));
    });
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el('tbody');
    var ranks = {};
    entries.forEach(function (entry) {
      var row = el('tr', 'cs-entry');
      var pid = entry.participant ? entry.participant.id : '';
      row.dataset.participantId = String(pid);
      row.appendChild(el('td', 'cs-num cs-e-rank', entry.rank));
      var name = el('td', 'cs-e-name', entryName(entry));
      if (entry.team) name.title = entry.team.members.map(function (m) { return m.name; }).join(', ');
      row.appendChild(name);
      row.appendChild(el('td', 'cs-num cs-e-score', formatScore(entry.score)));
      row.appendChild(el('td', 'cs-num cs-e-subs', entry.submissions));
      row.appendChild(el('td', 'cs-e-last', formatTime(entry.last_submission_at)));
      var signature = entry.rank + ':' + entry.score + ':' + entry.submissions;
      ranks[pid] = signature;
      if (flash && section.lastRanks && section.lastRanks[pid] !== signature) {
        row.classList.add('cs-changed');
      }
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
    section.board.appendChild(table);
    section.lastRanks = ranks;
  }

  // a team's entry is named by the team (its members in the row's tooltip)
  function entryName(entry) {
    return entry.name || (entry.participant ? entry.participant.name : '?');
  }

  function renderChart(section, entries, metric, higher) {
    var scored = entries.filter(function (e) {
      return e.score !== null && e.score !== undefined && isFinite(e.score);
    }).slice(0, CHART_LIMIT);
    if (!window.Plotly || !scored.length) {
      section.chart.hidden = true;
      if (window.Plotly) window.Plotly.purge(section.chart);
      return;
    }
    section.chart.hidden = false;
    var dark = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches;
    var color = dark ? '#e6edf3' : '#1f2328';
    var positions = scored.map(function (_, i) { return i; });
    var labels = scored.map(function (e) {
      var name = entryName(e);
      if (name.length > 32) name = name.slice(0, 31) + '…';
      return plotlyText(e.rank + '. ' + name);
    });
    var hover = scored.map(function (e) {
      return plotlyText(entryName(e) + ': ' + formatScore(e.score) +
        ' (' + e.submissions + ' submissions)');
    });
    var data = [{
      type: 'bar',
      orientation: 'h',
      x: scored.map(function (e) { return e.score; }),
      y: positions,
      hovertext: hover,
      hoverinfo: 'text',
      marker: { color: dark ? '#4493f8' : '#1f77b4' }
    }];
    var layout = {
      margin: { l: 150, r: 16, t: 28, b: 36 },
      height: Math.max(140, 60 + 22 * scored.length),
      paper_bgcolor: 'rgba(0,0,0,0)',
      plot_bgcolor: 'rgba(0,0,0,0)',
      font: { color: color, size: 12 },
      title: {
        text: plotlyText('best ' + metric + ' (' + (higher ? 'higher' : 'lower') + ' is better)'),
        font: { size: 13 },
        x: 0
      },
      xaxis: { zeroline: true, gridcolor: dark ? '#30363d' : '#e5e7eb' },
      yaxis: {
        tickmode: 'array',
        tickvals: positions,
        ticktext: labels,
        autorange: 'reversed',
        automargin: true
      },
      showlegend: false
    };
    section.chart.style.height = layout.height + 'px';
    window.Plotly.react(section.chart, data, layout, {
      displayModeBar: false,
      responsive: true
    });
  }

  /** Re-render when a competition opens or closes by the clock (one timer, not polling). */
  function scheduleStatusRefresh() {
    if (statusTimer !== null) window.clearTimeout(statusTimer);
    statusTimer = null;
    var now = Date.now();
    var next = Infinity;
    state.competitions.forEach(function (c) {
      if (c.status === 'closed') return;
      [c.opens_at, c.closes_at].forEach(function (iso) {
        var t = iso ? Date.parse(iso) : NaN;
        if (!isNaN(t) && t > now && t < next) next = t;
      });
    });
    if (next !== Infinity) {
      statusTimer = window.setTimeout(function () {
        statusTimer = null;
        renderAll();
      }, Math.min(24 * 3600 * 1000, next - now + 50));
    }
  }

  renderNotice();
  connect();
})();
