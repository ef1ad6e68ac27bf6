"""The parametric face model room: ICT-FaceKit loading (`ict`), the MediaPipe -> ICT landmark
correspondence (`correspondence`), per-clip fitting to MediaPipe landmarks (`fit`), AUs read from the
fit (`aus`) and the AU -> ICT blendshape table (`au_table`). docs/mesh.md describes all of it."""
