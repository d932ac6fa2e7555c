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

export interface ILeaderboardEntry {
  rank: number;
  participant: IParticipantRef;
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
