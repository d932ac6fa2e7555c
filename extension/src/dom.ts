/**
 * DOM helpers. Every string that may come from the server goes through
 * `textContent` or an attribute; nothing here ever sets innerHTML.
 */

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string | null,
  children: Node[] = []
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined && text !== null) {
    node.textContent = text;
  }
  for (const child of children) {
    node.appendChild(child);
  }
  return node;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return String(iso);
  }
  return date.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit'
  });
}

export function formatScore(score: number | null | undefined): string {
  if (score === null || score === undefined || Number.isNaN(score)) {
    return '—';
  }
  return Number(score).toLocaleString(undefined, {
    maximumSignificantDigits: 5
  });
}

/** Compact, for narrow columns: the time today, else the date. Full time in the tooltip. */
export function formatShortTime(
  iso: string | null | undefined,
  now: Date = new Date()
): string {
  if (!iso) {
    return '—';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return String(iso);
  }
  if (date.toDateString() === now.toDateString()) {
    return date.toLocaleTimeString(undefined, {
      hour: '2-digit',
      minute: '2-digit'
    });
  }
  return date.toLocaleDateString(undefined, {
    month: 'short',
    day: 'numeric',
    year: date.getFullYear() === now.getFullYear() ? undefined : 'numeric'
  });
}

/** "#4,213 of 10,000" (or "no rank yet of 10,000"). */
export function formatPlace(rank: number | null, total: number): string {
  const of = ` of ${total.toLocaleString('en-US')}`;
  return (
    (rank === null ? 'no rank yet' : `#${rank.toLocaleString('en-US')}`) + of
  );
}

/** A rank cell's text: "—" for an entry with no score yet, never "null". */
export function formatRank(rank: number | null | undefined): string {
  return rank === null || rank === undefined ? '—' : String(rank);
}
