/**
 * Shapes of the crowdsource API v1 (see docs/api.md).
 */

export interface IParticipantRef {
  id: number;
  name: string;
}

export type CompetitionStatus = 'upcoming' | 'open' | 'closed';

export interface ICompetition {
  id: number;
  title: string;
  description: string;
  type: string;
  metric: string;
  higher_is_better: boolean;
  host: IParticipantRef;
  opens_at: string | null;
  closes_at: string | null;
  status: CompetitionStatus;
  created_at: string;
}

/** A team's public view on its board entry (members only; never its join code). */
export interface ITeamRef {
  id: number;
  name: string;
  members: IParticipantRef[];
}

export interface ILeaderboardEntry {
  rank: number;
  /** The participant, or a team's captain. */
  participant: IParticipantRef;
  /** What the entry is called: the participant's name, or the team's. */
  name?: string;
  team?: ITeamRef | null;
  score: number | null;
  submissions: number;
  last_submission_at: string | null;
}

export interface ILeaderboard {
  competition_id: number;
  board: 'public' | 'private';
  metric: string;
  higher_is_better: boolean;
  entries: ILeaderboardEntry[];
}

export interface IServerEvent {
  type: string;
  competition_id: number | null;
  at: string;
  data: any;
}

/** The name an entry is shown by: its team's, else its participant's. */
export function entryName(entry: ILeaderboardEntry): string {
  return entry.team?.name ?? entry.name ?? entry.participant.name;
}

/** Whether participant `id` owns an entry: as its participant or a member of its team. */
export function isEntryOf(entry: ILeaderboardEntry, id: number): boolean {
  return (
    entry.participant.id === id ||
    (entry.team?.members ?? []).some(member => member.id === id)
  );
}
