/**
 * The board view's styles, one copy for all three faces: injected once into the document
 * (JupyterLab variables where present, else the page's, else plain colours).
 */
const FG = 'var(--jp-ui-font-color1, var(--cs-text, #1f2328))';
const MUTED = 'var(--jp-ui-font-color2, var(--cs-muted, #656d76))';
const BORDER = 'var(--jp-border-color2, var(--cs-border, #d0d7de))';
const MINE = 'var(--jp-brand-color3, rgba(31, 119, 180, 0.15))';

export const BOARD_CSS = `
.cs-view { color: ${FG}; font-size: 13px; min-width: 0; }
.cs-view-head { align-items: center; display: flex; flex-wrap: wrap; gap: 6px 12px; margin: 4px 0; }
.cs-view .cs-status { color: ${MUTED}; font-size: 12px; }
.cs-view .cs-you { font-weight: 600; }
.cs-view .cs-you[hidden] { display: none; }
.cs-view .cs-search { flex: 1 1 10em; max-width: 20em; min-width: 6em; padding: 2px 6px; }
.cs-view .cs-search-note, .cs-view .cs-more { color: ${MUTED}; font-size: 12px; margin: 2px 0; }
.cs-view table.cs-board { border-collapse: collapse; width: 100%; }
.cs-view table.cs-board th { border-bottom: 1px solid ${BORDER}; color: ${MUTED}; font-weight: 600; padding: 3px 4px; text-align: left; }
.cs-view table.cs-board td { border-bottom: 1px solid ${BORDER}; overflow-wrap: anywhere; padding: 3px 4px; }
.cs-view tbody[hidden] { display: none; }
.cs-view .cs-rank, .cs-view .cs-score, .cs-view .cs-subs, .cs-view .cs-col-rank, .cs-view .cs-col-score, .cs-view .cs-col-subs { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.cs-view .cs-last { color: ${MUTED}; white-space: nowrap; }
.cs-view tr.cs-mine td { background: ${MINE}; font-weight: 600; }
.cs-view tr.cs-gap td { color: ${MUTED}; text-align: center; }
.cs-view .cs-chart { margin-top: 8px; width: 100%; }
.cs-view .cs-chart > div[hidden] { display: none; }
.cs-app > .cs-standings-view { grid-column: 1 / -1; }
.cs-view h3.cs-standings-title { font-size: 14px; margin: 0; }
.cs-view .cs-standings-note, .cs-view .cs-standings-more { color: ${MUTED}; font-size: 12px; margin: 2px 0; }
.cs-view table.cs-standings { border-collapse: collapse; margin: 4px 0 10px; width: 100%; }
.cs-view table.cs-standings th { border-bottom: 1px solid ${BORDER}; color: ${MUTED}; font-weight: 600; padding: 3px 4px; text-align: left; }
.cs-view table.cs-standings td { border-bottom: 1px solid ${BORDER}; overflow-wrap: anywhere; padding: 3px 4px; }
.cs-view .cs-standings-chart { width: 100%; }
.cs-view .cs-standings-chart[hidden] { display: none; }
`;

/** Add the styles to the document once. */
export function injectStyle(doc: Document = document): void {
  if (doc.getElementById('cs-board-style')) {
    return;
  }
  const style = doc.createElement('style');
  style.id = 'cs-board-style';
  style.textContent = BOARD_CSS;
  doc.head.appendChild(style);
}
