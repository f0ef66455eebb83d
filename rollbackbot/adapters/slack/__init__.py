"""Slack: Web API calls, the Bolt app for approvals, Block Kit rendering, approvers and chat hooks."""
